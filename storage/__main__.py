"""``python -m storage import|export|info|prune|copy``: the storage command line.

Every ``--db`` takes a SQLite file (``data.db``, ``sqlite:///data.db``) or a PostgreSQL URL
(``postgresql://user:password@host:5432/dbname``); the default is ``$DATABASE_URL``, else
``$DB_PATH``, else ``data.db``. Every failure prints one line naming the problem and exits with
status 2; no tracebacks.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from config import DB_FLAG_HELP
from formats import KlineChunk, ParseError, ReadStats, read_file
from storage.backend import default_db, describe, open_reader, open_writer
from storage.config import StorageSettings
from storage.errors import StorageError, UnknownSymbolError
from storage.readbase import BAR_EXPORT_COLUMNS, bars_for_export
from storage.records import TIMEFRAMES_S
from storage.timefmt import iso_from_ms, parse_iso_ms

EXPORT_COLUMNS = BAR_EXPORT_COLUMNS


def _default_db() -> str:
    return default_db()


def import_file(writer, path: Path, *, symbol: str | None = None, progress=None) -> dict:
    """Import one file in one transaction; return a summary. Raises on a bad file.

    ``writer`` is either backend's Writer (see :func:`storage.backend.open_writer`).
    """
    stats = ReadStats()
    new = dupes = klines = 0
    per_symbol: dict[str, int] = {}
    with writer.transaction():
        for chunk in read_file(path, symbol=symbol, stats=stats):
            if isinstance(chunk, KlineChunk):
                n = writer.write_klines(chunk.symbol, chunk.rows)
                klines += n
                per_symbol[chunk.symbol] = per_symbol.get(chunk.symbol, 0) + n
            else:
                n = writer.write_tick_arrays(
                    chunk.symbol,
                    chunk.id_kind,
                    chunk.trade_id,
                    chunk.ts_ms,
                    chunk.price,
                    chunk.qty,
                    chunk.is_buyer_maker,
                )
                new += n
                dupes += len(chunk) - n
                per_symbol[chunk.symbol] = per_symbol.get(chunk.symbol, 0) + n
            if progress is not None:
                progress(stats)
    return {
        "file": str(path),
        "format": stats.fmt,
        "new_ticks": new,
        "already_stored": dupes,
        "klines": klines,
        "skipped_messages": stats.skipped,
        "skipped_kinds": stats.skipped_kinds,
        "symbols": per_symbol,
    }


def _cmd_import(args) -> int:
    failures = 0
    with open_writer(args.db) as writer:
        for name in args.files:
            path = Path(name)
            started = time.monotonic()
            last = [0.0]

            def progress(st: ReadStats, path=path, started=started, last=last) -> None:
                now = time.monotonic()
                if now - last[0] >= 1.0 and now - started > 1.0:
                    pct = (
                        f" ({100 * st.bytes_read / st.bytes_total:.0f}% of file)"
                        if st.bytes_total
                        and st.fmt
                        and not st.fmt.endswith("_csv")
                        and path.suffix not in (".gz", ".zip")
                        else ""
                    )
                    print(f"  {path.name}: {st.rows:,} rows{pct}", file=sys.stderr, flush=True)
                    last[0] = now

            try:
                s = import_file(writer, path, symbol=args.symbol, progress=progress)
            except (ParseError, ValueError, StorageError) as exc:
                # A format error names file and line already; others (an id-kind conflict,
                # a full disk) do not name the input file, so say which one it was.
                where = "" if isinstance(exc, ParseError) else f"{path}: "
                print(f"error: {where}{exc} (nothing of this file was stored)", file=sys.stderr)
                failures += 1
                continue
            syms = ", ".join(f"{k} {v:,}" for k, v in s["symbols"].items()) or "none"
            what = (
                f"{s['klines']:,} klines"
                if s["klines"]
                else f"{s['new_ticks']:,} new ticks ({s['already_stored']:,} already stored)"
            )
            skipped = (
                f"; skipped {s['skipped_messages']:,} other messages "
                f"{json.dumps(s['skipped_kinds'])}"
                if s["skipped_messages"]
                else ""
            )
            print(
                f"{path}: {s['format']}: {what}; by symbol: {syms}{skipped} "
                f"[{time.monotonic() - started:.1f} s]"
            )
    return 2 if failures else 0


def _cmd_export(args) -> int:
    if args.tf not in TIMEFRAMES_S:
        raise ValueError(
            f"unknown timeframe {args.tf!r}: expected one of {', '.join(TIMEFRAMES_S)}"
        )
    start = parse_iso_ms(args.start) if args.start else None
    end = parse_iso_ms(args.end) if args.end else None
    with open_reader(args.db) as reader:
        bars = reader.bars(args.symbol, args.tf, start, end)
    out = bars_for_export(bars)
    try:
        out.to_csv(args.out, index=False, float_format="%.12g")
    except OSError as exc:
        raise StorageError(f"cannot write {args.out}: {exc.strerror or exc}") from None
    print(f"wrote {len(out):,} {args.tf} bars of {args.symbol.upper()} to {args.out}")
    return 0


def _fmt_ms(ms) -> str:
    return "-" if ms is None else iso_from_ms(ms)


def _cmd_info(args) -> int:
    with open_reader(args.db) as reader:
        info = reader.info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    where = "database" if info.get("backend") == "postgresql" else "file"
    engine = " (TimescaleDB)" if info.get("timescale") else ""
    print(
        f"{info['path']}{engine}: {where} {info['size_bytes'] / 1e6:,.1f} MB, "
        f"schema v{info['schema_version']}"
    )
    if not info["symbols"]:
        print("  (no symbols stored)")
    for s in info["symbols"]:
        ids = f"{s['id_kind']} ids" if s["ticks"] or s["last_id"] is not None else "no ticks"
        print(
            f"  {s['symbol']} ({ids}): {s['ticks']:,} ticks "
            f"{_fmt_ms(s['first_tick_ms'])} → {_fmt_ms(s['last_tick_ms'])}"
        )
        for tf, b in s["bars"].items():
            print(
                f"    {tf:>2} bars: {b['count']:,}  {_fmt_ms(b['first_ms'])} → "
                f"{_fmt_ms(b['last_ms'])}"
            )
        gaps = ", ".join(f"{k} {v}" for k, v in s["gaps"].items()) or "none"
        print(f"    gaps: {gaps}")
    return 0


def _cmd_prune(args) -> int:
    settings = StorageSettings.from_env()
    with open_writer(args.db) as writer:
        result = writer.prune(
            ticks_keep_s=settings.ticks_keep_s, bars_1s_keep_s=settings.bars_1s_keep_s
        )
    print(f"deleted {result['ticks']:,} ticks and {result['bars_1s']:,} 1s bars")
    return 0


def _cmd_copy(args) -> int:
    from storage.transfer import copy_database

    last = [0.0]

    def progress(msg: str) -> None:
        now = time.monotonic()
        if "copied" in msg or "skipped" in msg or now - last[0] >= 1.0:
            print(f"  {msg}", file=sys.stderr, flush=True)
            last[0] = now

    started = time.monotonic()
    report = copy_database(args.src, args.dst, symbols=args.symbols, progress=progress)
    for sym, c in report.copied.items():
        print(
            f"{sym}: {c['ticks']:,} ticks, {c['bars_1s']:,}/{c['bars_1m']:,}/{c['bars_5m']:,} "
            f"1s/1m/5m bars, {c['gaps']:,} gaps"
        )
    for sym in report.skipped:
        print(f"{sym}: skipped, the destination already holds data of it")
    print(
        f"copied {len(report.copied)} symbols, {report.alert_rules} alert rules, "
        f"{report.alert_events} alert events, {report.watched_pairs} watched pairs, "
        f"{report.sinks} sinks, {report.deliveries} deliveries, "
        f"{report.funding_rates} funding events "
        f"from {describe(args.src)} to {describe(args.dst)} "
        f"[{time.monotonic() - started:.1f} s]"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m storage", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    db_help = DB_FLAG_HELP

    imp = sub.add_parser("import", help="import recorded trades or klines")
    imp.add_argument("files", nargs="+", metavar="FILE")
    imp.add_argument("--db", default=_default_db(), help=db_help)
    imp.add_argument("--symbol", help="symbol for CSV dumps whose file name does not tell it")
    imp.set_defaults(func=_cmd_import)

    exp = sub.add_parser("export", help="write bars to CSV")
    exp.add_argument("--db", default=_default_db(), help=db_help)
    exp.add_argument("--symbol", required=True)
    exp.add_argument("--tf", required=True, help="1s, 1m or 5m")
    exp.add_argument("--start", help="ISO-8601 UTC, inclusive")
    exp.add_argument("--end", help="ISO-8601 UTC, inclusive")
    exp.add_argument("--out", required=True, help="CSV file to write")
    exp.set_defaults(func=_cmd_export)

    inf = sub.add_parser("info", help="symbols, counts, time ranges, gaps, file size")
    inf.add_argument("--db", default=_default_db(), help=db_help)
    inf.add_argument("--json", action="store_true", help="machine-readable output")
    inf.set_defaults(func=_cmd_info)

    pr = sub.add_parser("prune", help="apply retention now (TICKS_KEEP_HOURS, BARS_1S_KEEP_DAYS)")
    pr.add_argument("--db", default=_default_db(), help=db_help)
    pr.set_defaults(func=_cmd_prune)

    cp = sub.add_parser(
        "copy",
        help="copy every symbol, bar, tick, gap, alert, watched pair, sink, delivery and "
        "funding event to another database (e.g. SQLite into PostgreSQL)",
    )
    cp.add_argument(
        "--from",
        dest="src",
        required=True,
        metavar="DB",
        help="source: SQLite file or postgresql:// URL",
    )
    cp.add_argument(
        "--to",
        dest="dst",
        required=True,
        metavar="DB",
        help="destination (created if missing); symbols it already holds are skipped",
    )
    cp.add_argument(
        "--symbols",
        nargs="+",
        metavar="SYMBOL",
        help="only these symbols (alert rules are then not copied)",
    )
    cp.set_defaults(func=_cmd_copy)
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        # Inside the try: the environment (DB_PATH, retention) is checked before any command.
        StorageSettings.from_env()
        args = build_parser().parse_args(argv)
        return args.func(args)
    except (StorageError, UnknownSymbolError, ParseError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "interrupted: the file being imported (or the symbol being copied) was rolled back",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
