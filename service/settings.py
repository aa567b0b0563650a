"""Dashboard settings: one frozen record from defaults, the environment and CLI flags.

``streamlit run app.py -- [--db DB] [--replay FILE ...] [--speed X] [--no-autostart]``; the same
through the environment: ``REPLAY_FILES`` (paths separated by ``os.pathsep``), ``REPLAY_SPEED``,
``FEED_AUTOSTART=0``. The database follows the one rule of ``config.resolve_db`` (``--db``, then
``DATABASE_URL``, then ``DB_PATH``, then ``data.db``); ``BINANCE_WS_BASE`` and
``BINANCE_REST_BASE`` are read by ``config.binance_roots``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from config import (
    BINANCE_REST_BASE,
    BINANCE_WS_BASE,
    ConfigError,
    binance_roots,
    env_bool,
    env_number,
    resolve_db,
)
from config import SAMPLE_RECORDING as SAMPLE_RECORDING  # re-exported for the page
from storage.backend import is_postgres
from storage.config import StorageSettings

UPLOAD_SUBDIR = "pairs-desk-uploads"


class SettingsError(ConfigError):
    """A bad flag or environment variable; the message names it."""


def replay_db_path(db_path: str) -> str:
    """Where a replay writes: beside ``db_path``, e.g. ``data.db`` → ``data.replay.db``.

    A replay serves derived trade ids and times shifted to now; mixed into the live file they
    would corrupt its id sequences and bars, so a replay always gets its own file.
    """
    p = Path(db_path)
    return str(p.with_name(f"{p.stem}.replay{p.suffix or '.db'}"))


@dataclass(frozen=True, slots=True)
class AppSettings:
    """Everything the dashboard process is started with. Immutable; built once per run.

    db_path : database of the live feed: ``DATABASE_URL`` (PostgreSQL) if set, else the SQLite
        file ``DB_PATH`` (default ``data.db``).
    replay_db_path : SQLite file a replay writes to (``REPLAY_DB_PATH``, default beside
        ``db_path`` as ``<name>.replay.db``); recreated each time a replay starts.
    ws_base, rest_base : Binance roots (``BINANCE_WS_BASE``, ``BINANCE_REST_BASE``).
    replay_files : recordings to replay at start (``--replay``, ``REPLAY_FILES``); empty = live.
    replay_speed : pace multiplier of the replay (``--speed``, ``REPLAY_SPEED``; default 1).
    autostart : start the feed when the first page opens (``FEED_AUTOSTART``; default on).
    default_x, default_y : the pair shown when the URL names none.
    probe_timeout_s : seconds the "can Binance be reached?" probe waits (default 3).
    exchange_info_ttl_s : seconds between two reads of the live exchange's symbol list, in
        the background (default 600); a collected symbol that stops trading (delisted) is
        noticed and its feed stopped within it.
    max_upload_mb : largest recording a user may upload, in MB (``MAX_UPLOAD_MB``; default 50).
    upload_dir : where uploaded recordings are kept while replayed (``UPLOAD_DIR``; default a
        folder in the system temp directory).
    replay_dirs : further folders whose recordings a path typed in the page may replay
        (``REPLAY_DIRS``, separated by ``os.pathsep``); the bundled samples folder and
        ``upload_dir`` are always allowed, nothing else on the server is.
    shared_views : the live page's analytics, charts and reads are computed once per data
        version for every tab (``SHARED_VIEWS``; default on). Off, each browser session
        computes its own, as before (kept for ``bench/viewers.py``'s baseline).
    """

    db_path: str = "data.db"
    replay_db_path: str = "data.replay.db"
    ws_base: str = BINANCE_WS_BASE
    rest_base: str = BINANCE_REST_BASE
    replay_files: tuple[str, ...] = ()
    replay_speed: float = 1.0
    autostart: bool = True
    default_x: str = "BTCUSDT"
    default_y: str = "ETHUSDT"
    probe_timeout_s: float = 3.0
    exchange_info_ttl_s: float = 600.0
    max_upload_mb: float = 50.0
    upload_dir: str = "uploads"
    replay_dirs: tuple[str, ...] = ()
    shared_views: bool = True

    @property
    def start_in_replay(self) -> bool:
        return bool(self.replay_files)

    @classmethod
    def load(cls, argv: Sequence[str] = (), env: Mapping[str, str] | None = None) -> AppSettings:
        """Defaults, then the environment, then CLI flags (``argv`` after ``--``)."""
        env = os.environ if env is None else env
        parser = argparse.ArgumentParser(prog="streamlit run app.py --", add_help=False)
        parser.add_argument("--db", default=None)
        parser.add_argument("--replay", nargs="+", metavar="FILE", default=None)
        parser.add_argument("--speed", default=None)
        parser.add_argument("--no-autostart", action="store_true")
        try:
            args, unknown = parser.parse_known_args(list(argv))
        except SystemExit:
            raise SettingsError(f"bad dashboard flags {' '.join(argv)!r}") from None
        if unknown:
            raise SettingsError(
                f"unknown dashboard flag(s) {' '.join(unknown)}: expected [--db DB] "
                "[--replay FILE ...] [--speed X] [--no-autostart]"
            )
        try:
            storage = StorageSettings.from_env(dict(env))
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
        db_path = resolve_db(args.db, env)  # the one rule: --db, DATABASE_URL, DB_PATH, data.db
        # A replay's own SQLite file sits beside the live SQLite file (or $DB_PATH's).
        beside = db_path if not is_postgres(db_path) else storage.db_path
        files: tuple[str, ...] = ()
        if args.replay:
            files = tuple(args.replay)
        elif env.get("REPLAY_FILES"):
            files = tuple(f for f in env["REPLAY_FILES"].split(os.pathsep) if f.strip())
        for f in files:
            if not Path(f).is_file():
                raise SettingsError(f"replay file {f!r} does not exist")
        ws_base, rest_base = binance_roots(env)
        try:
            speed = env_number(
                "--speed" if args.speed is not None else "REPLAY_SPEED",
                1.0,
                raw=args.speed if args.speed is not None else env.get("REPLAY_SPEED"),
                high=1000,
            )
            autostart = env_bool("FEED_AUTOSTART", True, env) and not args.no_autostart
            max_upload_mb = env_number("MAX_UPLOAD_MB", 50.0, env, high=1000)
            shared_views = env_bool("SHARED_VIEWS", True, env)
        except ConfigError as exc:
            raise SettingsError(str(exc)) from None
        return cls(
            db_path=db_path,
            replay_db_path=env.get("REPLAY_DB_PATH") or replay_db_path(beside),
            ws_base=ws_base,
            rest_base=rest_base,
            replay_files=files,
            replay_speed=speed,
            autostart=autostart,
            max_upload_mb=max_upload_mb,
            upload_dir=env.get("UPLOAD_DIR")
            or str(Path(tempfile.gettempdir()) / "pairs-desk-uploads"),
            replay_dirs=tuple(
                d for d in (env.get("REPLAY_DIRS") or "").split(os.pathsep) if d.strip()
            ),
            shared_views=shared_views,
        )
