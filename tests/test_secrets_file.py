"""Sink secrets from a file outside the repository (``SECRETS_FILE``, ``[secrets] file``).

The environment wins, the file fills in; a file inside the repository is refused with one
line; a file others may read works with a warning; a malformed line is named by its number,
never shown. End to end: a Telegram token and a Slack URL that only the file holds reach a
local endpoint (port 0) through the delivery worker, the CLI's test message and the collector's
alerts file, and the token appears nowhere in what is printed or logged.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from config import REPO_ROOT
from service.alertfile import AlertFileError, load_config
from service.delivery import DeliveryWorker, RetryPolicy, Sink
from service.secretfile import (
    SecretEnviron,
    SecretsError,
    load_secret_environ,
    read_secrets_file,
    secret_environ,
)
from service.watchlist import main as watchlist_cli
from storage import open_reader, open_writer
from tests.alert_endpoints import Endpoint
from tests.conftest import wait_for

TOKEN = "555000111:AAFileOnlyTelegramTokenForTests_q"
HOOK = "T0FILE/B0FILE/fileOnlySecretPath"


def write_secrets(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.fixture
def secrets(tmp_path) -> Path:
    return write_secrets(
        tmp_path / "secrets.env",
        "# sinks of the desk\n\n"
        f"export QD_FILE_TG_TOKEN={TOKEN}\n"
        f'QD_FILE_SLACK_URL="http://127.0.0.1:1/services/{HOOK}"\n'
        "QD_BOTH=from-file\n",
    )


def test_values_come_from_the_environment_first_then_the_file(secrets):
    got = read_secrets_file(secrets)
    assert got.warning == "" and got.values["QD_FILE_TG_TOKEN"] == TOKEN
    assert got.values["QD_FILE_SLACK_URL"].endswith(HOOK)  # quotes removed
    env = secret_environ({"QD_BOTH": "from-env", "QD_BLANK": " "}, secrets)
    assert isinstance(env, SecretEnviron)
    assert env["QD_BOTH"] == "from-env" and env["QD_FILE_TG_TOKEN"] == TOKEN
    assert env.get("QD_NOWHERE") is None and "QD_BLANK" in env
    # SECRETS_FILE names the file when no file is given; without either, the env alone.
    assert secret_environ({"SECRETS_FILE": str(secrets)})["QD_BOTH"] == "from-file"
    plain = {"A": "1"}
    assert secret_environ(plain) is plain


def test_a_file_inside_the_repository_is_refused_in_one_line(tmp_path):
    with pytest.raises(SecretsError, match="is inside the repository") as exc:
        read_secrets_file(REPO_ROOT / "config" / "secrets.env")
    assert "\n" not in str(exc.value)
    link = tmp_path / "looks-outside.env"
    link.symlink_to(REPO_ROOT / "README.md")  # a link out of the tree into it: refused too
    with pytest.raises(SecretsError, match="is inside the repository"):
        read_secrets_file(link)
    with pytest.raises(SecretsError, match="does not exist"):
        read_secrets_file(tmp_path / "missing.env")


def test_a_file_others_can_read_warns_and_a_bad_line_is_named_not_shown(tmp_path, caplog):
    loose = write_secrets(tmp_path / "loose.env", f"QD_FILE_TG_TOKEN={TOKEN}\n", 0o644)
    caplog.set_level(logging.WARNING)
    env, warning = load_secret_environ({}, loose)
    assert env["QD_FILE_TG_TOKEN"] == TOKEN
    assert warning == f"secrets file {loose} can be read by others (mode 0644): chmod 600 {loose}"
    assert warning in caplog.text
    bad = write_secrets(tmp_path / "bad.env", f"OK=1\n{TOKEN}\n")
    with pytest.raises(SecretsError) as exc:
        read_secrets_file(bad)
    assert str(exc.value) == f"secrets file {bad}: line 2 is not KEY=VALUE"
    assert TOKEN not in str(exc.value) + caplog.text


def test_deliveries_and_the_cli_use_the_file_and_never_print_it(
    secrets, tmp_path, monkeypatch, capsys, caplog
):
    caplog.set_level(logging.DEBUG)
    for var in ("QD_FILE_TG_TOKEN", "QD_FILE_SLACK_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SECRETS_FILE", str(secrets))
    db = tmp_path / "s.db"
    with Endpoint(default="401") as ep, open_writer(db) as w:
        w.add_sink(
            name="tg", kind="telegram", target="env:QD_FILE_TG_TOKEN",
            params={"chat_id": "-1001", "api_base": ep.url("")},
        )  # fmt: skip
        rid = w.add_alert_rule(
            name="", x="BTCUSDT", y="ETHUSDT", tf="1s", metric="zscore", op=">",
            threshold=2.0, cooldown_s=0.0,
        )  # fmt: skip
        w.fire_alert(rule_id=rid, bar_time_ms=1_723_161_300_000, value=2.5, message="m")
        fast = RetryPolicy(base_s=0.01, cap_s=0.05, max_attempts=1, timeout_s=2.0)
        worker = DeliveryWorker(w, str(db), policy=fast, poll_s=0.05).start()  # env: default
        try:

            def failed() -> bool:
                with open_reader(db) as r:
                    return list(r.deliveries()["status"]) == ["failed"]

            wait_for(failed, 20, "the delivery refused (401)")
        finally:
            worker.stop()
        assert [h.path for h in ep.hits] == [f"/bot{TOKEN}/sendMessage"]  # from the file
        with open_reader(db) as r:
            stored = r.deliveries().to_csv() + r.alert_sinks().to_csv()
        assert watchlist_cli(["--db", str(db), "test-sink", "tg"]) == 1  # sent, refused (401)
        assert [h.path for h in ep.hits][-1] == f"/bot{TOKEN}/sendMessage"
    out, err = capsys.readouterr()
    assert "sink tg: failed: HTTP 401" in out
    for text in (out, err, caplog.text, stored):
        assert TOKEN not in text and TOKEN.split(":")[1] not in text


def test_the_alerts_file_names_its_secrets_file(secrets, tmp_path, monkeypatch):
    monkeypatch.delenv("SECRETS_FILE", raising=False)
    monkeypatch.delenv("QD_FILE_SLACK_URL", raising=False)
    toml = tmp_path / "alerts.toml"
    body = (
        '[[pairs]]\nx = "BTCUSDT"\ny = "ETHUSDT"\n\n'
        '[[sinks]]\nkind = "slack"\nname = "desk"\nurl_env = "QD_FILE_SLACK_URL"\n'
    )
    toml.write_text(body)
    with pytest.raises(AlertFileError, match="variable QD_FILE_SLACK_URL is not set"):
        load_config(toml)
    toml.write_text('[secrets]\nfile = "secrets.env"\n\n' + body)  # relative to the TOML file
    config = load_config(toml)
    assert config.secrets_file == str(secrets)
    assert config.environ()["QD_FILE_SLACK_URL"].endswith(HOOK)
    assert config.sinks[0].target == "env:QD_FILE_SLACK_URL"  # the name, never the value
    inside = REPO_ROOT / "secrets.env"
    toml.write_text(f'[secrets]\nfile = "{inside}"\n\n' + body)
    with pytest.raises(AlertFileError) as exc:
        load_config(toml)
    assert str(exc.value) == (
        f"{toml}: secrets file {inside} is inside the repository ({REPO_ROOT}): keep it "
        "outside, e.g. ~/.config/desk/secrets.env"
    )
    toml.write_text('[secrets]\nfiel = "x"\n\n' + body)
    with pytest.raises(AlertFileError, match="secrets: unknown key 'fiel' \\(did you mean 'file'"):
        load_config(toml)


def test_the_collector_refuses_a_secrets_file_in_the_repository(tmp_path, capsys):
    from ingestion.__main__ import main as collector

    toml = tmp_path / "alerts.toml"
    toml.write_text(
        f'[secrets]\nfile = "{REPO_ROOT / "x.env"}"\n\n[[pairs]]\nx = "BTCUSDT"\ny = "ETHUSDT"\n'
    )
    assert collector(["--alerts", str(toml), "--db", str(tmp_path / "c.db")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "inside the repository" in err[0]
    assert not (tmp_path / "c.db").exists()  # refused before anything was stored


def test_sink_lookups_fall_back_to_the_file_in_sink_methods(secrets):
    env = secret_environ({}, secrets)
    sink = Sink(1, "tg", "telegram", "env:QD_FILE_TG_TOKEN", {"chat_id": "1"})
    assert sink.endpoint(env).endswith(f"/bot{TOKEN}/sendMessage")
    assert TOKEN not in sink.masked(f"error at /bot{TOKEN}/sendMessage", env)
    assert os.environ.get("QD_FILE_TG_TOKEN") is None
