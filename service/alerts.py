"""User-defined alerts: rules, crossing detection with a cooldown, and the monitor thread.

A rule (``metric op threshold`` on one pair and timeframe) fires when its condition turns
true on a *closed* bar after being false on the bar before — on crossing, not on every bar it
stays true — and not again within ``cooldown_s`` of market time (bar times, so a replay at
5× behaves like the live market, only faster). The monitor runs in the background service,
so rules fire with no browser open; fired alerts are stored through ``Writer.fire_alert``
(the outbox: unique per rule and bar, so a restart never fires a bar twice). No Streamlit here.

A bar is *closed* once both legs have a later bar (each leg's trades arrive in time order,
so no trade of that bar can come any more), or once the pair's grid is
``CLOSE_GRACE_BARS`` bars past it (a leg that stopped trading does not hold alerts back);
see ``service.watch.closed_until_ms``.
"""

from __future__ import annotations

import json
import logging
import math
import operator
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from service.compute import METHODS, PairParams, metric_series
from service.watch import PairBoard, PairKey, closed_until_ms, leg_ends_ms
from storage import Reader, StorageError, UnknownSymbolError, Writer, open_reader, timeframe_s
from storage.timefmt import iso_from_ms

log = logging.getLogger(__name__)

#: Alert metrics: key (stored in the rule) → label.
METRICS: dict[str, str] = {
    "zscore": "z-score",
    "abs_zscore": "|z-score|",
    "spread": "spread",
    "corr": "correlation",
    "price_x": "price of X",
    "price_y": "price of Y",
    "volume_x": "volume of X",
    "volume_y": "volume of Y",
}

OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}

#: Closed bars evaluated at most per pass (after a long pause only the newest are checked).
MAX_BARS_PER_PASS = 500


@dataclass(frozen=True, slots=True)
class Rule:
    """One alert rule as stored (``Writer.add_alert_rule``); ``window``/``method`` from params."""

    rule_id: int
    name: str
    x: str
    y: str
    tf: str
    metric: str
    op: str
    threshold: float
    cooldown_s: float
    enabled: bool = True
    window: int = 60
    method: str = "ols"

    def params(self) -> PairParams:
        return PairParams(
            x=self.x, y=self.y, tf=self.tf, window=self.window, method=self.method, display_bars=1
        )

    def key(self) -> PairKey:
        """The watched pair this rule is evaluated on."""
        return PairKey(self.x, self.y, self.tf, self.window, self.method)

    def describe(self) -> str:
        metric = METRICS.get(self.metric, self.metric)
        metric = metric.replace("X", self.x).replace("Y", self.y)
        return f"{metric} {self.op} {self.threshold:g} ({self.x}/{self.y} {self.tf})"


def validate_rule(
    metric: str, op: str, threshold: float, cooldown_s: float, window: int, method: str
) -> None:
    """Raise ``ValueError`` naming the first bad field of a new rule."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}: expected one of {', '.join(METRICS)}")
    if op not in OPS:
        raise ValueError(f"unknown operator {op!r}: expected one of {', '.join(OPS)}")
    if not math.isfinite(threshold):
        raise ValueError("the threshold must be a finite number")
    if not (math.isfinite(cooldown_s) and cooldown_s >= 0):
        raise ValueError("the cooldown must be zero or more seconds")
    if method not in METHODS:
        raise ValueError(f"unknown hedge method {method!r}")
    if not 2 <= window <= 1000:
        raise ValueError("the window must be between 2 and 1000 bars")


def rules_from_frame(df: pd.DataFrame) -> list[Rule]:
    """``Reader.alert_rules()`` rows → rules (bad params fall back to the defaults)."""
    rules = []
    # to_dict, not itertuples: itertuples builds a namedtuple class on every call, and the
    # monitor parses the rules on every pass (a few per second with a feed running).
    for row in df.to_dict("records"):
        try:
            params = json.loads(row["params"] or "{}")
        except (TypeError, ValueError):
            params = {}
        rules.append(
            Rule(
                rule_id=int(row["rule_id"]),
                name=str(row["name"]),
                x=str(row["x"]),
                y=str(row["y"]),
                tf=str(row["tf"]),
                metric=str(row["metric"]),
                op=str(row["op"]),
                threshold=float(row["threshold"]),
                cooldown_s=float(row["cooldown_s"]),
                enabled=bool(row["enabled"]),
                window=int(params.get("window", 60)),
                method=str(params.get("method", "ols")),
            )
        )
    return rules


@dataclass(slots=True)
class RuleState:
    """What the monitor remembers per rule between passes."""

    last_bar_ms: int | None = None  # newest closed bar evaluated
    last_true: bool = False  # the condition on that bar
    last_fired_ms: int | None = None  # bar time of the last firing


@dataclass(frozen=True, slots=True)
class Firing:
    bar_time_ms: int
    value: float


def evaluate(
    rule: Rule, times_ms: np.ndarray, values: np.ndarray, state: RuleState
) -> list[Firing]:
    """Crossings of ``rule`` over closed bars newer than ``state.last_bar_ms``; updates state.

    ``times_ms``/``values`` are closed bars, oldest first. On first sight of a rule
    (``state.last_bar_ms is None``) the newest bar only sets the baseline: history never
    fires. NaN (warm-up) counts as "condition false".
    """
    cmp = OPS[rule.op]
    fired: list[Firing] = []
    if len(times_ms) == 0:
        return fired
    if state.last_bar_ms is None:
        v = float(values[-1])
        state.last_bar_ms = int(times_ms[-1])
        state.last_true = bool(math.isfinite(v) and cmp(v, rule.threshold))
        return fired
    start = int(np.searchsorted(times_ms, state.last_bar_ms, side="right"))
    start = max(start, len(times_ms) - MAX_BARS_PER_PASS)
    cooldown_ms = rule.cooldown_s * 1000.0
    for t, v in zip(times_ms[start:].tolist(), values[start:].tolist(), strict=True):
        now_true = bool(math.isfinite(v) and cmp(v, rule.threshold))
        if (
            now_true
            and not state.last_true
            and (state.last_fired_ms is None or t - state.last_fired_ms >= cooldown_ms)
        ):
            fired.append(Firing(int(t), float(v)))
            state.last_fired_ms = int(t)
        state.last_true = now_true
        state.last_bar_ms = int(t)
    return fired


def alert_message(rule: Rule, firing: Firing) -> str:
    when = iso_from_ms(firing.bar_time_ms)
    name = f"{rule.name}: " if rule.name else ""
    return f"{name}{rule.describe()} — value {firing.value:.4g} at bar {when}"


@dataclass
class MonitorStats:
    passes: int = 0
    evaluations: int = 0
    fired: int = 0
    last_pass_ms: int | None = None
    last_error: str = ""
    errors: int = 0
    skipped_rules: dict[int, str] = field(default_factory=dict)


class AlertMonitor:
    """A daemon thread evaluating every enabled rule on each newly closed bar.

    It opens its own ``Reader`` (readers are per thread) and records firings through the
    shared, thread-safe ``Writer``. It wakes every ``poll_s`` seconds and does work only when
    the database changed (``Reader.data_version``) or the rules did. Stop with :meth:`stop`.
    ``board``: the process's snapshots of watched pairs (``PageViews.board``), shared with the
    Watchlist tab of every session; by default a board of its own (a headless collector).
    """

    def __init__(
        self,
        writer: Writer,
        db_path: str,
        *,
        poll_s: float = 0.25,
        clock: Callable[[], float] = time.time,
        board: PairBoard | None = None,
    ) -> None:
        self._writer = writer
        self._board = board if board is not None else PairBoard()
        #: Called (in the monitor thread) after an alert was queued: ``DeliveryWorker.poke``.
        self.on_fired: Callable[[], None] = lambda: None
        self._db_path = db_path
        self._poll_s = poll_s
        self._clock = clock
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._states: dict[int, RuleState] = {}
        self.stats = MonitorStats()
        self._thread = threading.Thread(target=self._run, name="alert-monitor", daemon=True)

    def start(self) -> AlertMonitor:
        self._thread.start()
        return self

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def poke(self) -> None:
        """Re-read the rules now (called after a rule was added, changed or deleted)."""
        self._wake.set()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        reader: Reader | None = None
        seen_version: int | None = None
        try:
            while not self._stop.is_set():
                try:
                    if reader is None:
                        reader = open_reader(self._db_path)
                    version = reader.data_version()
                    poked = self._wake.is_set()
                    self._wake.clear()
                    if version != seen_version or poked:
                        seen_version = version
                        self.run_once(reader)
                except StorageError as exc:
                    self._note_error(str(exc))
                    if reader is not None:
                        reader.close()
                        reader = None
                except Exception as exc:  # broad on purpose: a monitor must outlive one bad pass
                    log.exception("alert pass failed")
                    self._note_error(f"{type(exc).__name__}: {exc}")
                self._wake.wait(self._poll_s)
        finally:
            if reader is not None:
                reader.close()

    def _note_error(self, message: str) -> None:
        self.stats.errors += 1
        self.stats.last_error = message

    def run_once(self, reader: Reader) -> int:
        """One pass over every enabled rule; returns how many alerts were recorded.

        Rules are grouped by pair (legs, timeframe, window, method): each pair is computed at
        most once per new bar (``service.watch.PairBoard``), however many rules watch it.
        """
        rules = [r for r in rules_from_frame(reader.alert_rules()) if r.enabled]
        live_ids = {r.rule_id for r in rules}
        for rid in list(self._states):
            if rid not in live_ids:
                del self._states[rid]
        by_pair: dict[PairKey, list[Rule]] = {}
        for rule in rules:
            try:
                by_pair.setdefault(rule.key(), []).append(rule)
            except ValueError as exc:
                self.stats.skipped_rules[rule.rule_id] = str(exc)
        recorded = 0
        for key, pair_rules in by_pair.items():
            try:
                recorded += self._check_pair(reader, key, pair_rules)
                for rule in pair_rules:
                    self.stats.skipped_rules.pop(rule.rule_id, None)
            except (UnknownSymbolError, ValueError) as exc:
                # A pair with no data yet, or a statistic undefined on it: not an error of
                # the monitor, shown next to the rule instead.
                for rule in pair_rules:
                    self.stats.skipped_rules[rule.rule_id] = str(exc)
        self.stats.passes += 1
        self.stats.last_pass_ms = int(self._clock() * 1000)
        self.stats.fired += recorded
        return recorded

    def _check_pair(self, reader: Reader, key: PairKey, rules: list[Rule]) -> int:
        ends = leg_ends_ms(reader, key)
        if ends is None:
            return 0
        tf_ms = timeframe_s(key.tf) * 1000
        newest_closed = closed_until_ms(ends, tf_ms)
        need = 1
        for rule in rules:
            state = self._states.setdefault(rule.rule_id, RuleState())
            if state.last_bar_ms is not None:
                need = max(need, (newest_closed - state.last_bar_ms) // tf_ms)
        if all(
            self._states[r.rule_id].last_bar_ms is not None
            and self._states[r.rule_id].last_bar_ms >= newest_closed
            for r in rules
        ):
            return 0  # no newly closed bar: nothing to evaluate
        # fresh_s=0: the monitor reads the version on every pass, so it sees each new bar.
        snap = self._board.get(reader, key, min(need, MAX_BARS_PER_PASS), fresh_s=0.0)
        if snap.n_bars < 2:
            return 0
        times = snap.table["time_ms"].to_numpy(dtype=np.int64)
        closed = times <= newest_closed
        recorded = 0
        for rule in rules:
            values = metric_series(snap, rule.metric)  # the page's metric definitions
            self.stats.evaluations += 1
            state = self._states[rule.rule_id]
            for firing in evaluate(rule, times[closed], values[closed], state):
                event_id = self._writer.fire_alert(
                    rule_id=rule.rule_id,
                    bar_time_ms=firing.bar_time_ms,
                    value=firing.value,
                    message=alert_message(rule, firing),
                )
                if event_id is not None:
                    recorded += 1
                    self.on_fired()
        return recorded
