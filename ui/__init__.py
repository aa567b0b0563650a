"""The Streamlit page's parts: sidebar, panels, charts. Only this package and ``app.py`` import
``streamlit``; the work they show is done by ``service`` (background threads, shared compute).
"""
