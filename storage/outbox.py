"""The watchlist, the alert sinks and the alert outbox: the SQL both backends share.

A fired alert and one ``alert_deliveries`` row per enabled sink are written in one transaction
(:meth:`OutboxWrites.fire_alert`): the outbox. A delivery worker later *claims* due rows with a
conditional ``UPDATE`` (status ``pending``, or a ``sending`` claim whose lease ran out), so two
processes on one PostgreSQL database never send the same row at the same time: the database
re-checks the ``WHERE`` after the row lock, and only one claimer sees ``rowcount == 1``.

Sinks store no secret: ``target`` is either a plain URL or ``env:NAME`` (the environment
variable holding it); a Telegram bot token likewise (``params.token_env``).

SQL is written with ``?`` placeholders; the PostgreSQL backend turns them into ``%s``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from storage.records import timeframe_s
from storage.timefmt import now_ms

#: States of a delivery: waiting (maybe for a retry), being sent, done, given up.
DELIVERY_STATUSES = ("pending", "sending", "delivered", "failed")
SINK_KINDS = ("webhook", "slack", "discord", "telegram")

WATCHLIST_COLUMNS = ["pair_id", "x", "y", "tf", "window_bars", "method", "created_ts_ms"]
SINK_COLUMNS = ["sink_id", "name", "kind", "target", "params", "enabled", "created_ts_ms"]
DELIVERY_COLUMNS = [
    "event_id",
    "sink_id",
    "sink",
    "kind",
    "status",
    "attempts",
    "last_error",
    "next_attempt_ms",
    "updated_ts_ms",
    "delivered_ts_ms",
]

#: Runs one ``?``-placeholder statement in the current write transaction; returns a cursor.
Exec = Callable[[str, Sequence[Any]], Any]


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery this worker now owns until ``lease_until_ms``: the alert and its rule."""

    event_id: int
    sink_id: int
    attempts: int  # attempts before this one
    rule_id: int
    fired_ts_ms: int
    bar_time_ms: int
    value: float
    message: str
    #: The rule as it is now (``alert_rules`` columns and ``params``); None if deleted since.
    rule: tuple[tuple[str, Any], ...] | None = None


_RULE_FIELDS = ("name", "x", "y", "tf", "metric", "op", "threshold", "cooldown_s", "params")


def _check_pair(x: str, y: str, tf: str, window_bars: int, method: str) -> None:
    timeframe_s(tf)
    if not x or not y or x.upper() == y.upper():
        raise ValueError(f"a pair needs two different symbols (got {x!r}/{y!r})")
    if not 2 <= int(window_bars) <= 1000:
        raise ValueError("the window must be between 2 and 1000 bars")
    if not method:
        raise ValueError("no hedge method")


class OutboxWrites:
    """Writer methods for the watchlist, sinks and outbox, on ``storage.writebase.WriterBase``'s
    ``_unit`` (one transaction) and ``_exec`` (one ``?`` statement)."""

    def _unit(self, fn: Callable[[Any], Any]) -> Any:  # pragma: no cover - WriterBase's
        raise NotImplementedError

    def _exec(self, conn: Any, sql: str, params: Sequence[Any] = ()) -> Any:  # pragma: no cover
        raise NotImplementedError

    def _outbox_tx(self, fn: Callable[[Exec], Any]) -> Any:
        """Run ``fn(execute)`` in one write transaction (the engine's ``_unit``/``_exec``)."""
        return self._unit(lambda conn: fn(lambda sql, params=(): self._exec(conn, sql, params)))

    # ----------------------------------------------------------------- watchlist
    def watch_pair(self, x: str, y: str, tf: str, window_bars: int, method: str) -> int:
        """Add a pair to the watchlist (no-op if already there); returns its ``pair_id``."""
        _check_pair(x, y, tf, window_bars, method)
        key = (x.upper(), y.upper(), tf, int(window_bars), method)

        def work(ex: Exec) -> int:
            ex(
                "INSERT INTO watchlist (x, y, tf, window_bars, method, created_ts_ms) "
                "VALUES (?,?,?,?,?,?) ON CONFLICT (x, y, tf, window_bars, method) DO NOTHING",
                (*key, now_ms()),
            )
            return int(
                ex(
                    "SELECT pair_id FROM watchlist WHERE x = ? AND y = ? AND tf = ? "
                    "AND window_bars = ? AND method = ?",
                    key,
                ).fetchone()[0]
            )

        return self._outbox_tx(work)

    def unwatch_pair(self, pair_id: int) -> bool:
        """Remove a pair from the watchlist (its rules stay, and are skipped while unwatched)."""
        return self._outbox_tx(
            lambda ex: ex("DELETE FROM watchlist WHERE pair_id = ?", (int(pair_id),)).rowcount == 1
        )

    # ----------------------------------------------------------------- sinks
    def add_sink(
        self, *, name: str, kind: str, target: str, params: dict[str, Any] | None = None
    ) -> int:
        """Add a sink, or update the one of that name; returns its ``sink_id``.

        ``target``: a URL, or ``env:NAME``. Never pass a secret in ``params``.
        """
        if kind not in SINK_KINDS:
            raise ValueError(f"unknown sink kind {kind!r}: expected one of {', '.join(SINK_KINDS)}")
        if not name:
            raise ValueError("a sink needs a name")
        text = json.dumps(params or {}, sort_keys=True)

        def work(ex: Exec) -> int:
            ex(
                "INSERT INTO alert_sinks (name, kind, target, params, enabled, created_ts_ms) "
                "VALUES (?,?,?,?,1,?) ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, "
                "target = excluded.target, params = excluded.params, enabled = 1",
                (name, kind, target, text, now_ms()),
            )
            return int(ex("SELECT sink_id FROM alert_sinks WHERE name = ?", (name,)).fetchone()[0])

        return self._outbox_tx(work)

    def set_sink_enabled(self, sink_id: int, enabled: bool) -> None:
        self._outbox_tx(
            lambda ex: ex(
                "UPDATE alert_sinks SET enabled = ? WHERE sink_id = ?", (int(enabled), sink_id)
            )
        )

    # ----------------------------------------------------------------- outbox
    def fire_alert(
        self,
        *,
        rule_id: int,
        bar_time_ms: int,
        value: float,
        message: str,
        fired_ts_ms: int | None = None,
    ) -> int | None:
        """Store a fired alert and queue it for every enabled sink, in one transaction.

        Returns the new ``event_id``, or None if this rule already fired for this bar (in
        this or another process): then nothing is queued again.
        """
        fired = now_ms() if fired_ts_ms is None else int(fired_ts_ms)

        def work(ex: Exec) -> int | None:
            cur = ex(
                "INSERT INTO alert_events (rule_id, fired_ts_ms, bar_time_ms, value, message) "
                "VALUES (?,?,?,?,?) ON CONFLICT (rule_id, bar_time_ms) DO NOTHING "
                "RETURNING event_id",
                (int(rule_id), fired, int(bar_time_ms), float(value), message),
            )
            rows = cur.fetchall()  # all: SQLite finishes a RETURNING statement only then
            if not rows:
                return None
            event_id = int(rows[0][0])
            ex(
                "INSERT INTO alert_deliveries (event_id, sink_id, status, attempts, last_error, "
                "next_attempt_ms, claimed_by, lease_until_ms, updated_ts_ms) "
                "SELECT ?, sink_id, 'pending', 0, '', ?, '', 0, ? FROM alert_sinks "
                "WHERE enabled = 1",
                (event_id, fired, fired),
            )
            return event_id

        return self._outbox_tx(work)

    def claim_deliveries(
        self, sink_id: int, worker_id: str, *, now_ms_: int, lease_ms: int, limit: int = 20
    ) -> list[Claimed]:
        """Take up to ``limit`` due deliveries of one sink, oldest first, for ``lease_ms``.

        Due: ``pending`` with ``next_attempt_ms <= now``, or ``sending`` whose lease ran out
        (its worker died mid-send). Each row is taken by a conditional UPDATE, so a row
        another process claimed in the meantime is skipped, never sent twice at once.
        """
        due = (
            "((d.status = 'pending' AND d.next_attempt_ms <= ?) OR "
            "(d.status = 'sending' AND d.lease_until_ms < ?))"
        )

        def work(ex: Exec) -> list[Claimed]:
            rule_cols = ", ".join(f"r.{c}" for c in _RULE_FIELDS)
            rows = ex(
                "SELECT d.event_id, d.attempts, e.rule_id, e.fired_ts_ms, e.bar_time_ms, "
                f"e.value, e.message, r.rule_id, {rule_cols} FROM alert_deliveries d "
                "JOIN alert_events e ON e.event_id = d.event_id "
                "LEFT JOIN alert_rules r ON r.rule_id = e.rule_id "
                f"WHERE d.sink_id = ? AND {due} "
                "ORDER BY d.next_attempt_ms, d.event_id LIMIT ?",
                (sink_id, now_ms_, now_ms_, int(limit)),
            ).fetchall()
            out = []
            for event_id, attempts, rule_id, fired, bar, value, message, found, *rule in rows:
                taken = ex(
                    "UPDATE alert_deliveries SET status = 'sending', claimed_by = ?, "
                    "lease_until_ms = ?, updated_ts_ms = ? WHERE event_id = ? AND sink_id = ? "
                    f"AND {due.replace('d.', '')}",
                    (worker_id, now_ms_ + lease_ms, now_ms_, event_id, sink_id, now_ms_, now_ms_),
                ).rowcount
                if taken == 1:
                    out.append(
                        Claimed(
                            int(event_id),
                            int(sink_id),
                            int(attempts),
                            int(rule_id),
                            int(fired),
                            int(bar),
                            float(value),
                            str(message),
                            None if found is None else tuple(zip(_RULE_FIELDS, rule, strict=True)),
                        )
                    )
            return out

        return self._outbox_tx(work)

    def finish_delivery(
        self,
        event_id: int,
        sink_id: int,
        worker_id: str,
        *,
        status: str,
        error: str = "",
        next_attempt_ms: int | None = None,
        now_ms_: int | None = None,
        count_attempt: bool = True,
    ) -> bool:
        """Record an attempt's outcome on a delivery this worker claimed.

        ``status``: ``delivered``, ``failed`` (given up) or ``pending`` (retry at
        ``next_attempt_ms``). False if the claim was lost (another worker took the row over).
        ``count_attempt`` False hands a claimed row back unsent.
        """
        if status not in ("pending", "delivered", "failed"):
            raise ValueError(f"delivery status {status!r} not in pending/delivered/failed")
        now = now_ms() if now_ms_ is None else int(now_ms_)
        nxt = now if next_attempt_ms is None else int(next_attempt_ms)
        done = now if status == "delivered" else None
        return self._outbox_tx(
            lambda ex: (
                ex(
                    "UPDATE alert_deliveries SET status = ?, "
                    f"attempts = attempts + {int(count_attempt)}, "
                    "last_error = ?, next_attempt_ms = ?, claimed_by = '', lease_until_ms = 0, "
                    "updated_ts_ms = ?, delivered_ts_ms = ? WHERE event_id = ? AND sink_id = ? "
                    "AND status = 'sending' AND claimed_by = ?",
                    (status, error[:500], nxt, now, done, event_id, sink_id, worker_id),
                ).rowcount
                == 1
            )
        )

    def retry_failed(self, sink_id: int | None = None) -> int:
        """Queue failed deliveries again (after fixing a sink); returns how many."""
        where, params = ("", ()) if sink_id is None else (" AND sink_id = ?", (int(sink_id),))
        return self._outbox_tx(
            lambda ex: (
                ex(
                    "UPDATE alert_deliveries SET status = 'pending', next_attempt_ms = ?, "
                    f"updated_ts_ms = ? WHERE status = 'failed'{where}",
                    (now_ms(), now_ms(), *params),
                ).rowcount
            )
        )


class OutboxReads:
    """Reader methods for the watchlist, sinks and deliveries (``ReaderBase`` provides ``_q``)."""

    def _q(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:  # pragma: no cover
        raise NotImplementedError

    def watchlist(self) -> pd.DataFrame:
        """Watched pairs in the order they were added."""
        return pd.DataFrame(
            self._q(f"SELECT {', '.join(WATCHLIST_COLUMNS)} FROM watchlist ORDER BY pair_id"),
            columns=WATCHLIST_COLUMNS,
        )

    def alert_sinks(self) -> pd.DataFrame:
        """Sinks (``target`` is a URL or ``env:NAME``; mask it before showing it)."""
        return pd.DataFrame(
            self._q(f"SELECT {', '.join(SINK_COLUMNS)} FROM alert_sinks ORDER BY sink_id"),
            columns=SINK_COLUMNS,
        )

    def deliveries(self, event_ids: Sequence[int] | None = None, limit: int = 5000) -> pd.DataFrame:
        """Delivery state per alert and sink, newest alert first."""
        where, params = "", []
        if event_ids is not None:
            ids = [int(i) for i in event_ids]
            if not ids:
                return pd.DataFrame(columns=DELIVERY_COLUMNS)
            where = f"WHERE d.event_id IN ({','.join('?' * len(ids))}) "
            params = ids
        rows = self._q(
            "SELECT d.event_id, d.sink_id, s.name, s.kind, d.status, d.attempts, d.last_error, "
            "d.next_attempt_ms, d.updated_ts_ms, d.delivered_ts_ms FROM alert_deliveries d "
            f"JOIN alert_sinks s ON s.sink_id = d.sink_id {where}"
            "ORDER BY d.event_id DESC, d.sink_id LIMIT ?",
            (*params, int(limit)),
        )
        return pd.DataFrame(rows, columns=DELIVERY_COLUMNS)
