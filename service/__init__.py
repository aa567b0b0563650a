"""The Streamlit-free service: feeds, writer, replay, retention, alert monitor, shared computation.

Everything here runs in background threads or plain functions and never imports ``streamlit``;
the page (``app.py`` + ``ui/``) calls into it and only draws. Imports flow downward:
``service`` → ``ingestion``, ``storage``, ``analytics``.
"""
