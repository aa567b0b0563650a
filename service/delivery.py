"""Delivery of fired alerts to webhooks, Slack, Discord and Telegram, from the storage outbox.

A fired alert is committed first (``Writer.fire_alert``: the event and one ``pending`` delivery
per enabled sink, in one transaction); then :class:`DeliveryWorker` sends it. The worker runs
one daemon thread per sink, so a dead or hanging sink delays neither the alert monitor nor the
other sinks. Each thread *claims* due deliveries of its sink (a conditional UPDATE: two
processes on one PostgreSQL database never send the same row), sends each with ``urllib``
(stdlib), and records the outcome:

* 2xx: ``delivered``.
* a connection error, a timeout, 408, 5xx or 429: ``pending`` again, retried after an
  exponential backoff with full jitter (at least the ``Retry-After`` a 429 asked for), until
  ``max_attempts``; then ``failed``.
* any other 4xx (a wrong URL or token): ``failed`` at once with the reason.

A process killed mid-send leaves the row ``sending``; once its lease ran out any worker (this
process after a restart, or another one) sends it again with the *same* idempotency key, so a
receiver that deduplicates on it sees every alert once. A row delivered is never sent again.

Secrets never reach the database or the logs: a sink stores ``env:NAME`` (or a plain URL for a
webhook without a secret), resolved from the environment, then the secrets file
(``service.secretfile``); :func:`mask_url` and :func:`mask_secret` are what the page, logs
and exports show. No Streamlit here.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import logging
import math
import os
import random
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from service.secretfile import process_environ
from storage import StorageError, Writer, open_reader
from storage.outbox import SINK_KINDS, Claimed
from storage.timefmt import iso_from_ms

log = logging.getLogger(__name__)

#: Telegram Bot API root; a sink's ``api_base`` param overrides it (tests, self-hosted API).
TELEGRAM_API = "https://api.telegram.org"
#: Discord refuses messages longer than this many characters.
DISCORD_MAX_CHARS = 2000


class SinkConfigError(ValueError):
    """A sink that cannot be used as configured (missing variable, malformed URL)."""


# ------------------------------------------------------------------------- secrets
def mask_secret(secret: str) -> str:
    """A secret as it may be shown: its first 3 and last 2 characters at most."""
    if len(secret) < 12:
        return "***"
    return f"{secret[:3]}…{secret[-2:]}"


def mask_url(url: str) -> str:
    """A URL as it may be shown: scheme and host only (paths and queries carry the secrets)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "***"
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}/***" if parts.scheme and host else "***"


def check_url(url: str, what: str) -> None:
    """Raise ``SinkConfigError`` unless ``url`` is an absolute http(s) URL with a host."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        raise SinkConfigError(f"{what} is not a valid URL") from None
    del port
    if parts.scheme not in ("http", "https"):
        raise SinkConfigError(f"{what} must be an http(s) URL (got scheme {parts.scheme!r})")
    if not parts.hostname:
        raise SinkConfigError(f"{what} has no host")


# ------------------------------------------------------------------------- sinks
@dataclass(frozen=True, slots=True)
class Sink:
    """A sink as stored: ``target`` is a URL or ``env:NAME``; ``params`` hold no secret.

    Telegram: ``target`` is ``env:NAME`` of the bot token; ``params["chat_id"]`` the chat;
    ``params["api_base"]`` optionally another API root.
    """

    sink_id: int
    name: str
    kind: str
    target: str
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    enabled: bool = True

    def shown_target(self) -> str:
        """What the page, logs and exports may show of the target."""
        if self.target.startswith("env:"):
            return f"${self.target[4:]}"
        return mask_url(self.target)

    def secret_value(self, environ: Mapping[str, str]) -> str:
        """The URL (or the Telegram token) this sink sends to; raises if its variable is unset."""
        if not self.target.startswith("env:"):
            return self.target
        var = self.target[4:]
        value = environ.get(var, "").strip()
        if not value:
            raise SinkConfigError(f"sink {self.name!r}: environment variable {var} is not set")
        return value

    def endpoint(self, environ: Mapping[str, str]) -> str:
        """The URL to POST to, checked (raises ``SinkConfigError``)."""
        value = self.secret_value(environ)
        if self.kind == "telegram":
            base = str(self.params.get("api_base", TELEGRAM_API)).rstrip("/")
            check_url(base, f"sink {self.name!r}: api_base")
            if not self.params.get("chat_id"):
                raise SinkConfigError(f"sink {self.name!r}: a telegram sink needs chat_id")
            return f"{base}/bot{value}/sendMessage"
        check_url(value, f"sink {self.name!r}: url")
        return value

    def masked(self, text: str, environ: Mapping[str, str]) -> str:
        """``text`` with this sink's secret (if known) replaced by its masked form: the
        whole URL or token, and a URL's path alone (servers echo paths in errors)."""
        try:
            secret = self.secret_value(environ)
        except SinkConfigError:
            return text
        if not secret:
            return text
        if self.kind == "telegram":
            return text.replace(secret, mask_secret(secret))
        text = text.replace(secret, mask_url(secret))
        with contextlib.suppress(ValueError):
            parts = urllib.parse.urlsplit(secret)
            tail = parts.path + (f"?{parts.query}" if parts.query else "")
            if len(tail) > 1:
                text = text.replace(tail, "/***")
        return text


def sinks_from_frame(df: Any) -> list[Sink]:
    """``Reader.alert_sinks()`` rows → sinks."""
    out = []
    for row in df.itertuples(index=False):
        try:
            params = json.loads(row.params or "{}")
        except (TypeError, ValueError):
            params = {}
        out.append(
            Sink(
                int(row.sink_id),
                str(row.name),
                str(row.kind),
                str(row.target),
                MappingProxyType(params),
                bool(row.enabled),
            )
        )
    return out


# ------------------------------------------------------------------------- payloads
def alert_payload(c: Claimed) -> dict[str, Any]:
    """The generic webhook body: every field a receiver needs, and a stable idempotency key."""
    rule = dict(c.rule or ())
    try:
        params = json.loads(rule.get("params") or "{}")
    except (TypeError, ValueError):
        params = {}
    x, y = rule.get("x"), rule.get("y")
    text = rule.get("name") or ""
    if rule:
        text = text or f"{rule['metric']} {rule['op']} {float(rule['threshold']):g}"
    return {
        "idempotency_key": idempotency_key(c),
        "alert_id": c.event_id,
        "rule_id": c.rule_id,
        "rule": text,
        "pair": f"{x}/{y}" if x and y else None,
        "tf": rule.get("tf"),
        "window": params.get("window"),
        "method": params.get("method"),
        "metric": rule.get("metric"),
        "op": rule.get("op"),
        "threshold": None if not rule else float(rule["threshold"]),
        "value": c.value,
        "bar_time": iso_from_ms(c.bar_time_ms),
        "fired_at": iso_from_ms(c.fired_ts_ms),
        "message": c.message,
    }


def idempotency_key(c: Claimed) -> str:
    """The same for every attempt of one alert to one sink: ``rule:bar_time_ms:sink``."""
    return f"qd-{c.rule_id}-{c.bar_time_ms}-{c.sink_id}"


def request_body(sink: Sink, payload: dict[str, Any]) -> dict[str, Any]:
    """What each kind of sink expects: the full payload, or the service's message format."""
    message = str(payload["message"])
    if sink.kind == "webhook":
        return payload
    if sink.kind == "slack":  # incoming webhook: {"text": ...}
        return {"text": message}
    if sink.kind == "discord":  # webhook: {"content": ...}, mentions disabled
        return {"content": message[:DISCORD_MAX_CHARS], "allowed_mentions": {"parse": []}}
    if sink.kind == "telegram":  # Bot API sendMessage
        return {
            "chat_id": sink.params.get("chat_id"),
            "text": message,
            "disable_web_page_preview": True,
        }
    raise SinkConfigError(f"unknown sink kind {sink.kind!r}: expected one of {SINK_KINDS}")


# ------------------------------------------------------------------------- one attempt
@dataclass(frozen=True, slots=True)
class Outcome:
    """One attempt: delivered, or why not, and whether trying again may help."""

    ok: bool
    retry: bool = False
    error: str = ""
    retry_after_s: float | None = None


def _retry_after(exc: urllib.error.HTTPError, body: bytes) -> float | None:
    """Seconds asked for by ``Retry-After`` (seconds or an HTTP date) or a JSON body
    (Discord ``retry_after``, Telegram ``parameters.retry_after``)."""
    header = exc.headers.get("Retry-After") if exc.headers else None
    if header:
        try:
            return max(0.0, float(header))
        except ValueError:
            when = email.utils.parsedate_to_datetime(header)
            if when is not None:
                return max(0.0, when.timestamp() - time.time())
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        return None
    if isinstance(data, dict):
        for v in (data.get("retry_after"), (data.get("parameters") or {}).get("retry_after")):
            if isinstance(v, int | float) and math.isfinite(v):
                return max(0.0, float(v))
    return None


def post_json(
    url: str, body: dict[str, Any], *, timeout_s: float, headers: Mapping[str, str] = {}
) -> Outcome:
    """POST ``body`` as JSON; classify the result. Never raises for network trouble."""
    data = json.dumps(body, allow_nan=False, default=str).encode()
    req = urllib.request.Request(
        url,
        data=data,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "qd-alerts/1", **headers},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            resp.read(65_536)
            return Outcome(ok=True)
    except urllib.error.HTTPError as exc:
        try:
            text = exc.read(4096)
        except (OSError, ValueError):
            text = b""
        code = exc.code
        if code == 429:
            return Outcome(False, True, "HTTP 429 (rate limited)", _retry_after(exc, text))
        if code >= 500 or code == 408:
            return Outcome(False, True, f"HTTP {code}")
        detail = text.decode("utf-8", "replace").strip().replace("\n", " ")[:200]
        return Outcome(False, False, f"HTTP {code}: {detail}" if detail else f"HTTP {code}")
    except TimeoutError:
        return Outcome(False, True, f"no answer within {timeout_s:g} s")
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            return Outcome(False, True, f"no answer within {timeout_s:g} s")
        return Outcome(False, True, f"cannot connect: {_reason(reason)}")
    except (ConnectionError, OSError, ValueError) as exc:  # reset, remote closed, bad URL
        return Outcome(False, True, f"connection failed: {_reason(exc)}")


def _reason(reason: object) -> str:
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__


def send_to(
    sink: Sink,
    payload: dict[str, Any],
    *,
    environ: Mapping[str, str] | None = None,
    timeout_s: float = 10.0,
) -> Outcome:
    """One attempt to send ``payload`` to ``sink``; errors name the sink, never its secret."""
    env = process_environ()[0] if environ is None else environ
    try:
        url = sink.endpoint(env)
        body = request_body(sink, payload)
    except SinkConfigError as exc:
        return Outcome(False, False, str(exc))
    out = post_json(
        url,
        body,
        timeout_s=timeout_s,
        headers={"Idempotency-Key": str(payload.get("idempotency_key", ""))},
    )
    if out.error:
        out = Outcome(out.ok, out.retry, sink.masked(out.error, env), out.retry_after_s)
    return out


def send_test(
    sink: Sink, *, environ: Mapping[str, str] | None = None, timeout_s: float = 10.0
) -> Outcome:
    """Send a test message now (not stored; no retry): "send test message" on page and CLI."""
    now = int(time.time() * 1000)
    payload = {
        "idempotency_key": f"qd-test-{uuid.uuid4().hex[:12]}",
        "alert_id": None,
        "rule": "test message",
        "pair": None,
        "tf": None,
        "window": None,
        "method": None,
        "metric": None,
        "op": None,
        "threshold": None,
        "value": None,
        "bar_time": iso_from_ms(now),
        "fired_at": iso_from_ms(now),
        "message": f"Test message from the pairs desk to sink {sink.name!r}",
        "test": True,
    }
    return send_to(sink, payload, environ=environ, timeout_s=timeout_s)


# ------------------------------------------------------------------------- retry policy
@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter: attempt n waits U(0, min(cap, base·2ⁿ)) seconds,
    but at least what a 429 asked for; after ``max_attempts`` the delivery is ``failed``."""

    base_s: float = 1.0
    cap_s: float = 300.0
    max_attempts: int = 10
    timeout_s: float = 10.0
    #: A claim outlives a send in flight by this much before another worker may take it over.
    lease_margin_s: float = 30.0

    def delay_s(self, attempt: int, rng: random.Random, retry_after_s: float | None) -> float:
        jittered = rng.uniform(0.0, min(self.cap_s, self.base_s * 2.0 ** min(attempt, 30)))
        return max(jittered, retry_after_s or 0.0)


@dataclass
class DeliveryStats:
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    last_error: str = ""
    errors: int = 0
    sinks: dict[str, str] = field(default_factory=dict)  # sink name → last outcome


class DeliveryWorker:
    """Sends the outbox: one daemon thread per enabled sink, plus one that follows the sinks.

    It shares the process's ``Writer`` (thread-safe) for claims and outcomes and reads the
    sink list with its own ``Reader``. Stop with :meth:`stop` (one Event; a send in flight
    ends within its timeout). ``clock`` (seconds) and ``rng`` are injectable for tests.
    """

    def __init__(
        self,
        writer: Writer,
        db: str,
        *,
        policy: RetryPolicy | None = None,
        poll_s: float = 0.5,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self._writer = writer
        self._db = db
        self.policy = policy or RetryPolicy()
        self._poll_s = poll_s
        # The environment, then the secrets file (service/secretfile.py).
        self._environ = process_environ()[0] if environ is None else environ
        self._clock = clock
        self._rng = rng or random.Random()
        self._stop = threading.Event()
        self._wakes: dict[int, threading.Event] = {}
        self._hold_until_ms: dict[int, int] = {}  # sink → no request before (after a 429)
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.stats = DeliveryStats()
        self._sinks: dict[int, Sink] = {}
        self._threads: dict[int, threading.Thread] = {}
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._follow, name="alert-delivery", daemon=True)

    @property
    def lease_ms(self) -> int:
        """How long a claim is ours: a send in flight ends well within it."""
        return int((2 * self.policy.timeout_s + self.policy.lease_margin_s) * 1000)

    def start(self) -> DeliveryWorker:
        self._thread.start()
        return self

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def poke(self) -> None:
        """Look at the outbox now (an alert was just queued, or a sink changed)."""
        with self._lock:
            for ev in self._wakes.values():
                ev.set()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self.poke()
        deadline = time.monotonic() + timeout_s
        for t in [self._thread, *self._threads.values()]:
            if t.is_alive():
                t.join(max(0.0, deadline - time.monotonic()))

    # ------------------------------------------------------------------ threads
    def _follow(self) -> None:
        """Start a thread per enabled sink as sinks appear; sink threads end when removed."""
        while not self._stop.is_set():
            try:
                with open_reader(self._db) as reader:
                    sinks = {s.sink_id: s for s in sinks_from_frame(reader.alert_sinks())}
                with self._lock:
                    self._sinks = {k: s for k, s in sinks.items() if s.enabled}
                    for sink_id in self._sinks:
                        t = self._threads.get(sink_id)
                        if t is None or not t.is_alive():
                            self._wakes[sink_id] = threading.Event()
                            t = threading.Thread(
                                target=self._sink_loop,
                                args=(sink_id,),
                                name=f"alert-sink-{sink_id}",
                                daemon=True,
                            )
                            self._threads[sink_id] = t
                            t.start()
            except StorageError as exc:
                self._note_error(str(exc))
            self._stop.wait(max(self._poll_s, 1.0))

    def _sink_loop(self, sink_id: int) -> None:
        while not self._stop.is_set():
            with self._lock:
                sink = self._sinks.get(sink_id)
                wake = self._wakes[sink_id]
            if sink is None:
                return  # removed or disabled
            try:
                busy = self.run_sink_once(sink)
            except StorageError as exc:
                self._note_error(str(exc))
                busy = False
            except Exception as exc:  # broad on purpose: a sink thread must outlive one bug
                log.exception("delivery to sink %s failed", sink.name)
                self._note_error(f"{type(exc).__name__}: {exc}")
                busy = False
            if not busy:
                wake.wait(self._poll_s)
                wake.clear()

    def run_sink_once(self, sink: Sink) -> bool:
        """Claim and send this sink's due deliveries once; True if there were any.

        A 429 holds the whole sink (not only that alert) for its ``Retry-After``: the rest of
        the batch is handed back, due at the end of the hold, without counting an attempt.
        """
        now_ms = int(self._clock() * 1000)
        hold = self._hold_until_ms.get(sink.sink_id, 0)
        if now_ms < hold:
            self._stop.wait(min(self._poll_s, (hold - now_ms) / 1000))
            return True
        claimed = self._writer.claim_deliveries(
            sink.sink_id, self.worker_id, now_ms_=now_ms, lease_ms=self.lease_ms, limit=10
        )
        for i, c in enumerate(claimed):
            if self._stop.is_set():
                break  # the claim's lease runs out; a restart sends it
            hold_ms = self._deliver(sink, c)
            if hold_ms is not None:
                self._hold_until_ms[sink.sink_id] = hold_ms
                for rest in claimed[i + 1 :]:
                    self._writer.finish_delivery(
                        rest.event_id,
                        sink.sink_id,
                        self.worker_id,
                        status="pending",
                        error="held: the sink asked to slow down (429)",
                        next_attempt_ms=hold_ms,
                        count_attempt=False,
                    )
                break
        return bool(claimed)

    def _deliver(self, sink: Sink, c: Claimed) -> int | None:
        """Send one claimed delivery and record the outcome; the hold time (ms) after a 429."""
        out = send_to(
            sink, alert_payload(c), environ=self._environ, timeout_s=self.policy.timeout_s
        )
        attempts = c.attempts + 1
        now_ms = int(self._clock() * 1000)
        hold = None
        if out.ok:
            status, nxt, error = "delivered", None, ""
            self.stats.delivered += 1
        elif out.retry and attempts < self.policy.max_attempts:
            delay = self.policy.delay_s(c.attempts, self._rng, out.retry_after_s)
            status, nxt, error = "pending", now_ms + int(delay * 1000), out.error
            if out.retry_after_s is not None:
                hold = now_ms + int(out.retry_after_s * 1000)
            self.stats.retried += 1
        else:
            status, nxt = "failed", None
            error = (
                out.error if not out.retry else f"gave up after {attempts} attempts: {out.error}"
            )
            self.stats.failed += 1
        self.stats.sinks[sink.name] = status if not error else f"{status}: {error}"
        if error:
            log.warning("alert %s to sink %s: %s (%s)", c.event_id, sink.name, status, error)
        self._writer.finish_delivery(
            c.event_id,
            sink.sink_id,
            self.worker_id,
            status=status,
            error=error,
            next_attempt_ms=nxt,
            now_ms_=now_ms,
        )
        return hold

    def _note_error(self, message: str) -> None:
        self.stats.errors += 1
        self.stats.last_error = message
