"""Dashboard settings: one frozen record from defaults, the environment and CLI flags.

``streamlit run app.py -- --replay FILE [FILE ...] [--speed X] [--no-autostart]``; the same
through the environment: ``REPLAY_FILES`` (paths separated by ``os.pathsep``), ``REPLAY_SPEED``,
``FEED_AUTOSTART=0``. ``BINANCE_WS_BASE``, ``BINANCE_REST_BASE`` and ``DB_PATH`` are honoured.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from storage.config import StorageSettings

#: The real BTCUSDT + ETHUSDT capture bundled with the repository (see samples/).
SAMPLE_RECORDING = (
    Path(__file__).resolve().parent.parent / "samples" / ("btcusdt_ethusdt_20240808_trades.txt.gz")
)

DEFAULT_WS_BASE = "wss://fstream.binance.com"
DEFAULT_REST_BASE = "https://fapi.binance.com"

UPLOAD_SUBDIR = "pairs-desk-uploads"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class SettingsError(ValueError):
    """A bad flag or environment variable; the message names it."""


def _env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise SettingsError(f"{name}={env[name]!r}: expected 1/0, true/false, yes/no or on/off")


def _positive(name: str, raw: str | float) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if not value > 0 or value > 1000:
        raise SettingsError(f"{name}={raw!r}: expected a number in (0, 1000]")
    return value


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
    max_upload_mb : largest recording a user may upload, in MB (``MAX_UPLOAD_MB``; default 50).
    upload_dir : where uploaded recordings are kept while replayed (``UPLOAD_DIR``; default a
        folder in the system temp directory).
    replay_dirs : further folders whose recordings a path typed in the page may replay
        (``REPLAY_DIRS``, separated by ``os.pathsep``); the bundled samples folder and
        ``upload_dir`` are always allowed, nothing else on the server is.
    """

    db_path: str = "data.db"
    replay_db_path: str = "data.replay.db"
    ws_base: str = DEFAULT_WS_BASE
    rest_base: str = DEFAULT_REST_BASE
    replay_files: tuple[str, ...] = ()
    replay_speed: float = 1.0
    autostart: bool = True
    default_x: str = "BTCUSDT"
    default_y: str = "ETHUSDT"
    probe_timeout_s: float = 3.0
    max_upload_mb: float = 50.0
    upload_dir: str = "uploads"
    replay_dirs: tuple[str, ...] = ()

    @property
    def start_in_replay(self) -> bool:
        return bool(self.replay_files)

    @classmethod
    def load(cls, argv: Sequence[str] = (), env: Mapping[str, str] | None = None) -> AppSettings:
        """Defaults, then the environment, then CLI flags (``argv`` after ``--``)."""
        env = os.environ if env is None else env
        parser = argparse.ArgumentParser(prog="streamlit run app.py --", add_help=False)
        parser.add_argument("--replay", nargs="+", metavar="FILE", default=None)
        parser.add_argument("--speed", default=None)
        parser.add_argument("--no-autostart", action="store_true")
        try:
            args, unknown = parser.parse_known_args(list(argv))
        except SystemExit:
            raise SettingsError(f"bad dashboard flags {' '.join(argv)!r}") from None
        if unknown:
            raise SettingsError(
                f"unknown dashboard flag(s) {' '.join(unknown)}: expected --replay FILE ... "
                "[--speed X] [--no-autostart]"
            )
        try:
            storage = StorageSettings.from_env(dict(env))
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
        db_path = storage.db  # DATABASE_URL (PostgreSQL) if set, else DB_PATH
        files: tuple[str, ...] = ()
        if args.replay:
            files = tuple(args.replay)
        elif env.get("REPLAY_FILES"):
            files = tuple(f for f in env["REPLAY_FILES"].split(os.pathsep) if f.strip())
        for f in files:
            if not Path(f).is_file():
                raise SettingsError(f"replay file {f!r} does not exist")
        speed_raw = args.speed if args.speed is not None else env.get("REPLAY_SPEED") or 1.0
        return cls(
            db_path=db_path,
            replay_db_path=env.get("REPLAY_DB_PATH") or replay_db_path(storage.db_path),
            ws_base=(env.get("BINANCE_WS_BASE") or DEFAULT_WS_BASE).rstrip("/"),
            rest_base=(env.get("BINANCE_REST_BASE") or DEFAULT_REST_BASE).rstrip("/"),
            replay_files=files,
            replay_speed=_positive(
                "--speed" if args.speed is not None else "REPLAY_SPEED", speed_raw
            ),
            autostart=_env_bool(env, "FEED_AUTOSTART", True) and not args.no_autostart,
            max_upload_mb=_positive("MAX_UPLOAD_MB", env.get("MAX_UPLOAD_MB") or 50.0),
            upload_dir=env.get("UPLOAD_DIR")
            or str(Path(tempfile.gettempdir()) / "pairs-desk-uploads"),
            replay_dirs=tuple(
                d for d in (env.get("REPLAY_DIRS") or "").split(os.pathsep) if d.strip()
            ),
        )
