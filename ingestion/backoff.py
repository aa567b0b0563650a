"""Reconnect delays and the process-wide connection-attempt limit.

The retry policy is a generator of delays (python-websockets style): the connection asks
``next(delays)`` before each retry and starts a fresh generator after a healthy
connection. Tests pass ``instant_backoff`` so nothing waits.
"""

from __future__ import annotations

import collections
import random
import threading
import time
from collections.abc import Callable, Iterator

__all__ = ["BackoffFactory", "ConnectLimiter", "backoff", "instant_backoff"]

#: A zero-argument callable returning a fresh iterator of delays in seconds.
BackoffFactory = Callable[[], Iterator[float]]


def backoff(
    initial_s: float = 0.5,
    factor: float = 2.0,
    max_s: float = 60.0,
    jitter: float = 0.5,
    rng: random.Random | None = None,
) -> Iterator[float]:
    """Yield reconnect delays in seconds: ``initial_s × factor**n`` capped at ``max_s``.

    Each delay is reduced by a random fraction up to ``jitter`` (0 = exact, 1 = full
    jitter), so many symbols dropped at once do not reconnect in lockstep. Endless.
    """
    rng = rng or random.Random()
    delay = initial_s
    while True:
        yield delay * (1.0 - jitter * rng.random())
        delay = min(max_s, delay * factor)


def instant_backoff() -> Iterator[float]:
    """Delays of zero: for tests, where waiting proves nothing."""
    while True:
        yield 0.0


class ConnectLimiter:
    """At most ``attempts`` connection attempts per sliding ``window_s`` seconds, process-wide.

    Binance allows about 300 connection attempts per 5 minutes per IP; every feed thread
    asks here before dialling, and waits (interruptibly) when the budget is spent.
    """

    def __init__(
        self,
        attempts: int = 250,
        window_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if attempts < 1 or window_s <= 0:
            raise ValueError("attempts must be >= 1 and window_s > 0")
        self._attempts = attempts
        self._window_s = window_s
        self._clock = clock
        self._times: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()

    def acquire(self, stop: threading.Event) -> bool:
        """Take one attempt, waiting if needed; ``False`` if ``stop`` was set while waiting."""
        while not stop.is_set():
            with self._lock:
                now = self._clock()
                while self._times and now - self._times[0] >= self._window_s:
                    self._times.popleft()
                if len(self._times) < self._attempts:
                    self._times.append(now)
                    return True
                wait_s = self._window_s - (now - self._times[0])
            stop.wait(max(wait_s, 0.01))
        return False

    def used(self) -> int:
        """Attempts counted in the current window."""
        with self._lock:
            now = self._clock()
            return sum(1 for t in self._times if now - t < self._window_s)
