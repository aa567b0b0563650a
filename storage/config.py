"""Storage settings: one frozen record built from defaults and the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass

from config import DEFAULT_DB as DEFAULT_DB_PATH
from config import ENV_DATABASE_URL, ENV_DB_PATH, env_number, resolve_db


@dataclass(frozen=True, slots=True)
class StorageSettings:
    """Where data lives and how long it is kept.

    db_path: the SQLite file (``DB_PATH``; default ``data.db`` in the working directory).
    database_url: a PostgreSQL URL (``DATABASE_URL``, e.g. ``postgresql://user:pw@host/db``);
        when set it wins over ``db_path``. :attr:`db` is the one to open.
    ticks_keep_s: seconds of ticks kept (``TICKS_KEEP_HOURS``; default 48 h; None = forever).
    bars_1s_keep_s: seconds of 1s bars kept (``BARS_1S_KEEP_DAYS``; default 7 days).
    retention_interval_s: seconds between retention passes in the background (default 300).
    1m and 5m bars are always kept.
    """

    db_path: str = DEFAULT_DB_PATH
    database_url: str | None = None
    ticks_keep_s: float | None = 48 * 3600.0
    bars_1s_keep_s: float | None = 7 * 86400.0
    retention_interval_s: float = 300.0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides) -> StorageSettings:
        env = dict(os.environ if env is None else env)
        hours = env_number("TICKS_KEEP_HOURS", 48.0, env, forever=True)
        days = env_number("BARS_1S_KEEP_DAYS", 7.0, env, forever=True)
        values = {
            "db_path": env.get(ENV_DB_PATH) or DEFAULT_DB_PATH,
            "database_url": env.get(ENV_DATABASE_URL) or None,
            "ticks_keep_s": None if hours is None else hours * 3600.0,
            "bars_1s_keep_s": None if days is None else days * 86400.0,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def db(self) -> str:
        """The database to open: ``database_url`` if set, else ``db_path`` (the config rule)."""
        return resolve_db(
            None, {ENV_DATABASE_URL: self.database_url or "", ENV_DB_PATH: self.db_path}
        )
