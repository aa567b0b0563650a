"""One rule chooses the database in every command line and in the page (``config.resolve_db``):
the ``--db`` flag, else ``$DATABASE_URL``, else ``$DB_PATH``, else ``data.db``.

Each entry point is run for real: the storage and analytics CLIs and the collector as
subprocesses in a scratch working directory, the page through ``AppSettings.load`` (what
``app.py`` calls with the flags after ``--``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from config import resolve_db
from replay import FakeBinance, load_recording
from service.settings import AppSettings
from storage import open_reader

ROOT = Path(__file__).resolve().parents[1]

#: (flag, DATABASE_URL, DB_PATH) -> the name that must be opened
CASES = [
    (None, None, None, "data.db"),
    (None, None, "a.db", "a.db"),
    (None, "b.db", "a.db", "b.db"),
    ("c.db", "b.db", "a.db", "c.db"),
]
IDS = ["default", "DB_PATH", "DATABASE_URL-over-DB_PATH", "flag-over-all"]


def _env(url: str | None, path: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DB_PATH")}
    env["PYTHONPATH"] = str(ROOT)
    env.update({k: v for k, v in (("DATABASE_URL", url), ("DB_PATH", path)) if v})
    return env


def _run(module: str, args: list[str], cwd: Path, env: dict[str, str], timeout_s: float = 60):
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


@pytest.mark.parametrize(("flag", "url", "path", "expected"), CASES, ids=IDS)
def test_resolve_db(flag, url, path, expected) -> None:
    env = {k: v for k, v in (("DATABASE_URL", url), ("DB_PATH", path)) if v}
    assert resolve_db(flag, env) == expected
    assert resolve_db("", env) == resolve_db(None, env)  # an empty flag is no flag


@pytest.mark.parametrize(("flag", "url", "path", "expected"), CASES, ids=IDS)
@pytest.mark.parametrize(
    ("module", "args"),
    [
        ("storage", ["info"]),
        ("analytics", ["--x", "BTCUSDT", "--y", "ETHUSDT", "--tf", "1m", "--window", "5"]),
    ],
    ids=["storage", "analytics"],
)
def test_cli_opens_the_database_the_rule_names(
    module, args, flag, url, path, expected, tmp_path
) -> None:
    """None of the files exist, so each CLI refuses naming the one it chose to open."""
    argv = list(args) + (["--db", flag] if flag else [])
    result = _run(module, argv, tmp_path, _env(url, path))
    assert result.returncode != 0
    assert f"no database at {expected}:" in result.stderr, result.stderr
    assert not any(tmp_path.iterdir()), "a refused read created a file"


@pytest.mark.parametrize(("flag", "url", "path", "expected"), CASES, ids=IDS)
def test_page_opens_the_database_the_rule_names(flag, url, path, expected) -> None:
    argv = ["--db", flag] if flag else []
    env = {k: v for k, v in (("DATABASE_URL", url), ("DB_PATH", path)) if v}
    assert AppSettings.load(argv, env).db_path == expected


@pytest.fixture(scope="module")
def server():
    from config import SAMPLE_RECORDING

    with FakeBinance(load_recording([SAMPLE_RECORDING]), speed=5, loop=True, preroll_s=5) as srv:
        yield srv


@pytest.mark.parametrize(("flag", "url", "path", "expected"), CASES, ids=IDS)
def test_collector_writes_the_database_the_rule_names(
    server, flag, url, path, expected, tmp_path
) -> None:
    args = ["--symbols", "btcusdt", "--duration", "1", "--ws-base", server.ws_base]
    args += ["--rest-base", server.rest_base] + (["--db", flag] if flag else [])
    result = _run("ingestion", args, tmp_path, _env(url, path), timeout_s=90)
    assert result.returncode == 0, result.stderr
    made = sorted(p.name for p in tmp_path.glob("*.db"))
    assert made == [expected], made
    with open_reader(tmp_path / expected) as reader:
        assert reader.symbols() == ["BTCUSDT"]
