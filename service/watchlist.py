"""Manage the watchlist and the alert sinks: the page's operations and a small CLI.

``python -m service.watchlist --db PATH list`` (or ``add BTCUSDT/ETHUSDT --tf 1s --window 60
--method ols``, ``remove ID``, ``sinks``, ``add-sink NAME --kind slack --url-env SLACK_URL``,
``test-sink NAME``, ``deliveries``, ``retry-failed``). Errors print one line and exit 2.
With SQLite, only one process may write: stop the dashboard's feed (or the collector)
before adding pairs here, or use a PostgreSQL database. No Streamlit here.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Mapping
from typing import Any

import pandas as pd

from service.alerts import rules_from_frame
from service.delivery import Sink, SinkConfigError, send_test, sinks_from_frame
from service.secretfile import secret_environ
from service.watch import PairBoard, PairKey, keys_from_watchlist, watchlist_keys
from storage import StorageError, open_reader, open_writer
from storage.backend import sqlite_path
from storage.outbox import SINK_KINDS

EXIT_ERROR = 2


def parse_pair(text: str) -> tuple[str, str]:
    """``"btcusdt/ethusdt"`` → ``("BTCUSDT", "ETHUSDT")``; ``ValueError`` naming the text."""
    legs = [p.strip().upper() for p in text.split("/")]
    if len(legs) != 2 or not all(legs) or not all(p.isalnum() for p in legs):
        raise ValueError(f"a pair is written X/Y, e.g. BTCUSDT/ETHUSDT (got {text!r})")
    if legs[0] == legs[1]:
        raise ValueError(f"the two legs must differ (both are {legs[0]})")
    return legs[0], legs[1]


def sink_from_input(
    name: str, kind: str, *, url: str = "", url_env: str = "", token_env: str = "",
    chat_id: str = "", api_base: str = "", environ: Mapping[str, str] | None = None,
) -> Sink:  # fmt: skip
    """A new sink from form or CLI fields, checked like the alerts file's (``SinkConfigError``)."""
    name = name.strip()
    if not name:
        raise SinkConfigError("a sink needs a name")
    if kind not in SINK_KINDS:
        raise SinkConfigError(f"kind must be one of {', '.join(SINK_KINDS)}")
    params: dict[str, Any] = {}
    if kind == "telegram":
        if not token_env or not chat_id:
            raise SinkConfigError("a telegram sink needs the token's variable and a chat id")
        target, params = f"env:{token_env.strip()}", {"chat_id": chat_id.strip()}
        if api_base:
            params["api_base"] = api_base.strip()
    else:
        if bool(url) == bool(url_env):
            raise SinkConfigError("give exactly one of a URL or the variable holding it")
        target = url.strip() if url else f"env:{url_env.strip()}"
    sink = Sink(0, name, kind, target, params)
    if environ is not None:
        sink.endpoint(environ)  # raises on a malformed URL or a variable not set
    elif not target.startswith("env:"):
        sink.endpoint({})
    return sink


def watched_symbols(db: str) -> list[str]:
    """Every symbol the stored watchlist needs, in watchlist order."""
    with open_reader(db) as reader:
        wl = reader.watchlist()
    return _legs(zip(wl["x"], wl["y"], strict=True))


def wanted_symbols(reader: Any) -> list[str]:
    """Every symbol the stored watchlist or an enabled alert rule needs."""
    wl = reader.watchlist()
    rules = reader.alert_rules()
    rules = rules[rules["enabled"].astype(bool)]
    return _legs([*zip(wl["x"], wl["y"], strict=True), *zip(rules["x"], rules["y"], strict=True)])


def _legs(pairs: Any) -> list[str]:
    out: list[str] = []
    for x, y in pairs:
        out += [s for s in (str(x), str(y)) if s not in out]
    return out


# ---------------------------------------------------------------------------- the page's
def _writer_of(service: Any) -> Any:
    writer = service.writer
    if writer is None:
        raise StorageError(service.read_only or "the database is read-only here")
    return writer


def watch_on(service: Any, key: PairKey) -> int:
    """Watch ``key`` in the dashboard service's database and collect its legs."""
    pid = _writer_of(service).watch_pair(key.x, key.y, key.tf, key.window, key.method)
    service.watch([key.x, key.y], pinned=False)
    if service.monitor is not None:
        service.monitor.poke()
    return pid


def unwatch_on(service: Any, pair_id: int) -> bool:
    """Stop watching a pair; legs no other pair, rule or page needs stop being collected."""
    return service.unwatch(int(pair_id))


def add_sink_on(service: Any, sink: Sink) -> int:
    sid = _writer_of(service).add_sink(
        name=sink.name, kind=sink.kind, target=sink.target, params=dict(sink.params)
    )
    if service.delivery is not None:
        service.delivery.poke()
    return sid


def watch_rows(
    board: PairBoard,
    reader: Any,
    band_z: float = 2.0,
    notes: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """One row per watched pair at its newest closed bar, sorted by |z| (largest first).

    Snapshots come from ``board`` (the process's ``PageViews.board``): a pair is computed
    once per new bar, whichever session or thread asks first. ``notes``: symbol → why it is
    not collected (delisted, refused by the exchange); a pair with such a leg says so.
    """
    wl = reader.watchlist()
    notes = notes or {}
    rows, keys = [], set()
    for pair_id, key in zip(wl["pair_id"].tolist(), watchlist_keys(wl), strict=True):
        if key is None:  # a method this version lacks
            continue
        keys.add(key)
        snap = board.get(reader, key)
        f = snap.figures
        z = f["z"]
        leg_notes = [f"{s}: {notes[s]}" for s in (key.x, key.y) if s in notes]
        rows.append(
            {
                "pair_id": int(pair_id),
                "pair": key.label,
                "tf": key.tf,
                "window": key.window,
                "method": key.method,
                "z": z,
                "beta": f["beta"],
                "corr": f["corr"],
                "half_life": f["half_life_bars"],
                "bars": int(f["bars"]),
                "z_spark": [float(v) for v in snap.z_tail() if v == v],
                "past_band": abs(z) / band_z if z == z else float("nan"),
                "note": "; ".join(leg_notes) or snap.error or "",
            }
        )
    board.forget(keys)
    df = pd.DataFrame(rows, columns=_ROW_COLUMNS)
    if df.empty:
        return df
    order = df["z"].abs().fillna(-1.0).sort_values(ascending=False, kind="stable").index
    return df.loc[order].reset_index(drop=True)


_ROW_COLUMNS = [
    "pair_id", "pair", "tf", "window", "method", "z", "beta", "corr", "half_life", "bars",
    "z_spark", "past_band", "note",
]  # fmt: skip


def sinks_table(reader: Any) -> pd.DataFrame:
    """Sinks as the page and the CLI show them: targets masked."""
    sinks = sinks_from_frame(reader.alert_sinks())
    return pd.DataFrame(
        [
            {
                "sink_id": s.sink_id,
                "name": s.name,
                "kind": s.kind,
                "target": s.shown_target(),
                "chat": s.params.get("chat_id", ""),
                "enabled": s.enabled,
            }
            for s in sinks
        ],
        columns=["sink_id", "name", "kind", "target", "chat", "enabled"],
    )


# ---------------------------------------------------------------------------- CLI
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m service.watchlist", description=__doc__.split("\n")[0]
    )
    p.add_argument("--db", required=True, help="SQLite file or postgresql:// URL")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="watched pairs with their latest figures")
    a = sub.add_parser("add", help="watch a pair")
    a.add_argument("pair", help="X/Y, e.g. BTCUSDT/ETHUSDT")
    a.add_argument("--tf", default="1s")
    a.add_argument("--window", type=int, default=60)
    a.add_argument("--method", default="ols")
    r = sub.add_parser("remove", help="stop watching a pair (by its id in `list`)")
    r.add_argument("pair_id", type=int)
    sub.add_parser("sinks", help="alert sinks (secrets masked)")
    s = sub.add_parser("add-sink", help="add or replace a sink")
    s.add_argument("name")
    s.add_argument("--kind", required=True, choices=SINK_KINDS)
    s.add_argument("--url", default="")
    s.add_argument("--url-env", default="", help="variable holding a secret URL")
    s.add_argument("--token-env", default="", help="telegram: variable holding the bot token")
    s.add_argument("--chat-id", default="")
    s.add_argument("--api-base", default="")
    t = sub.add_parser("test-sink", help="send a test message to a sink now")
    t.add_argument("name")
    sub.add_parser("deliveries", help="delivery state per alert and sink")
    sub.add_parser("retry-failed", help="queue failed deliveries again (after fixing a sink)")
    return p


def _print(df: pd.DataFrame) -> None:
    print("(none)" if df.empty else df.to_string(index=False), flush=True)


def _run(args: argparse.Namespace) -> int:
    db = args.db
    if args.cmd in ("list", "sinks", "deliveries", "test-sink"):
        with open_reader(db) as reader:
            if args.cmd == "list":
                _print(watch_rows(PairBoard(), reader).drop(columns=["z_spark", "past_band"]))
            elif args.cmd == "sinks":
                _print(sinks_table(reader))
            elif args.cmd == "deliveries":
                _print(reader.deliveries())
            else:
                found = [s for s in sinks_from_frame(reader.alert_sinks()) if s.name == args.name]
                if not found:
                    raise ValueError(f"no sink named {args.name!r}")
                out = send_test(found[0], environ=secret_environ())  # env, then SECRETS_FILE
                print(f"sink {args.name}: " + ("delivered" if out.ok else f"failed: {out.error}"))
                return 0 if out.ok else 1
        return 0
    with open_writer(db) as writer:
        if args.cmd == "add":
            x, y = parse_pair(args.pair)
            key = PairKey(x, y, args.tf, args.window, args.method)
            pid = writer.watch_pair(key.x, key.y, key.tf, key.window, key.method)
            print(f"watching {key.describe()} (id {pid})")
        elif args.cmd == "retry-failed":
            print(f"{writer.retry_failed()} failed deliveries queued again")
        elif args.cmd == "remove":
            if not writer.unwatch_pair(args.pair_id):
                raise ValueError(f"no watched pair with id {args.pair_id}")
            print(f"removed pair {args.pair_id}")
        else:
            sink = sink_from_input(
                args.name, args.kind, url=args.url, url_env=args.url_env,
                token_env=args.token_env, chat_id=args.chat_id, api_base=args.api_base,
            )  # fmt: skip
            sid = writer.add_sink(
                name=sink.name, kind=sink.kind, target=sink.target, params=dict(sink.params)
            )
            print(f"sink {sink.name} ({sink.kind}, {sink.shown_target()}) saved (id {sid})")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except (StorageError, ValueError) as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return EXIT_ERROR


def carry_over(path: str) -> dict[str, Any]:
    """Alert rules, watchlist and sinks of a SQLite file about to be recreated (a replay
    restart), to store again with :func:`restore`."""
    if not sqlite_path(path).exists():
        return {}
    with contextlib.suppress(StorageError, ValueError, OSError), open_reader(path) as reader:
        rules = [
            {
                "name": r.name, "x": r.x, "y": r.y, "tf": r.tf, "metric": r.metric, "op": r.op,
                "threshold": r.threshold, "cooldown_s": r.cooldown_s,
                "params": {"window": r.window, "method": r.method},
            }
            for r in rules_from_frame(reader.alert_rules())
        ]  # fmt: skip
        return {
            "rules": rules,
            "pairs": keys_from_watchlist(reader.watchlist()),
            "sinks": sinks_from_frame(reader.alert_sinks()),
        }
    return {}


def restore(writer: Any, carried: dict[str, Any]) -> None:
    """Store what :func:`carry_over` read into the recreated database."""
    for rule in carried.get("rules", []):
        with contextlib.suppress(StorageError, ValueError):
            writer.add_alert_rule(**rule)
    for key in carried.get("pairs", []):
        with contextlib.suppress(StorageError, ValueError):
            writer.watch_pair(key.x, key.y, key.tf, key.window, key.method)
    for sink in carried.get("sinks", []):
        with contextlib.suppress(StorageError, ValueError):
            writer.add_sink(
                name=sink.name, kind=sink.kind, target=sink.target, params=dict(sink.params)
            )


if __name__ == "__main__":
    sys.exit(main())
