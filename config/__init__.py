"""The one configuration module: the database rule, Binance roots, bundled files, limits, and
the parsing of environment variables.

Every package may import this module; it imports nothing from the project, so it sits below
``storage``. The settings records of each stage (``storage.config.StorageSettings``,
``ingestion.config.FeedSettings``, ``service.settings.AppSettings``) read the environment only
through the functions here, so one variable means the same thing in every command.

**The database rule** (every command line and the page): the ``--db`` flag if given, else
``$DATABASE_URL``, else ``$DB_PATH``, else ``data.db`` in the working directory. A name is a
SQLite file (``data.db``, ``sqlite:///data.db``) or a PostgreSQL URL (``postgresql://...``);
``storage.backend`` decides the engine from the name alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

__all__ = [
    "BINANCE_REST_BASE",
    "BINANCE_WS_BASE",
    "DB_FLAG_HELP",
    "DEFAULT_DB",
    "ENV_DATABASE_URL",
    "ENV_DB_PATH",
    "ENV_REST_BASE",
    "ENV_WS_BASE",
    "REPO_ROOT",
    "SAMPLE_RECORDING",
    "ConfigError",
    "binance_roots",
    "env_bool",
    "env_number",
    "resolve_db",
]

#: The repository (an editable install keeps the package here).
REPO_ROOT = Path(__file__).resolve().parent.parent

#: The real BTCUSDT + ETHUSDT futures capture bundled with the repository (``samples/README.md``).
SAMPLE_RECORDING = REPO_ROOT / "samples" / "btcusdt_ethusdt_20240808_trades.txt.gz"

#: Binance USD-M roots, without route (``../shared/docs/binance-usdm.md``).
BINANCE_WS_BASE = "wss://fstream.binance.com"
BINANCE_REST_BASE = "https://fapi.binance.com"
ENV_WS_BASE = "BINANCE_WS_BASE"
ENV_REST_BASE = "BINANCE_REST_BASE"

DEFAULT_DB = "data.db"
ENV_DATABASE_URL = "DATABASE_URL"
ENV_DB_PATH = "DB_PATH"
#: The help text of every command line's ``--db``.
DB_FLAG_HELP = (
    "SQLite file or postgresql:// URL (default: $DATABASE_URL, else $DB_PATH, else data.db)"
)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_FOREVER = {"none", "forever", "off"}


class ConfigError(ValueError):
    """A bad setting, flag or environment variable; the message is one line naming it."""


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def resolve_db(flag: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None):
    """The database to open: ``flag``, else ``$DATABASE_URL``, else ``$DB_PATH``, else ``data.db``.

    Empty strings count as unset. Returns ``str`` (a path or URL) exactly as given.
    """
    if flag is not None and os.fspath(flag).strip():
        return os.fspath(flag)
    env = _env(env)
    return env.get(ENV_DATABASE_URL) or env.get(ENV_DB_PATH) or DEFAULT_DB


def binance_roots(env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """``(ws_base, rest_base)``: ``$BINANCE_WS_BASE`` / ``$BINANCE_REST_BASE`` or Binance's own."""
    env = _env(env)
    ws = (env.get(ENV_WS_BASE) or BINANCE_WS_BASE).rstrip("/")
    rest = (env.get(ENV_REST_BASE) or BINANCE_REST_BASE).rstrip("/")
    return ws, rest


def env_bool(name: str, default: bool, env: Mapping[str, str] | None = None) -> bool:
    """A yes/no variable: 1/0, true/false, yes/no or on/off (any case); unset = ``default``."""
    raw = (_env(env).get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError(f"{name}={raw!r}: expected 1/0, true/false, yes/no or on/off")


def env_number(
    name: str,
    default: float | None,
    env: Mapping[str, str] | None = None,
    *,
    high: float | None = None,
    forever: bool = False,
    raw: str | float | None = None,
) -> float | None:
    """A positive number from ``name`` (or from ``raw`` if given, e.g. a flag's value).

    Unset or empty gives ``default``. ``forever=True`` also accepts ``none``/``forever``/``off``
    and returns ``None`` for them (a retention without limit). ``high`` is an inclusive upper
    bound. Anything else is a :class:`ConfigError` naming the variable.
    """
    if raw is None:
        raw = _env(env).get(name)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return default
    if forever and isinstance(raw, str) and raw.strip().lower() in _FOREVER:
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if high is not None and not 0 < value <= high:  # also NaN
        raise ConfigError(f"{name}={raw!r}: expected a number in (0, {high:g}]")
    if not value > 0:
        raise ConfigError(f"{name}={raw!r} must be positive" + (" (or 'forever')" * forever))
    return value
