"""Holds the process's one dashboard service across Streamlit code reloads. Keep it tiny.

Streamlit re-imports a module whose file changed; this one never changes, so the reference
below survives and ``service.desk.acquire_service`` can close the old service before starting a
new one.
"""

from typing import Any

SERVICE: Any = None
