"""The Streamlit dashboard's parts: settings, background service, alerts, data, charts, panels.

Only this package and ``app.py`` import ``streamlit``; ``ui.service`` and ``ui.alerts`` run in
background threads and never call ``st.*``.
"""
