"""bench/harness.py, the one way tests and benchmarks start the page: its failure path.

The success path runs in every browser test and benchmark; here a server that cannot start
must fail at once with its own output, not after the health-check deadline.
"""

from __future__ import annotations

import os
import time

import pytest

from bench.harness import start_streamlit


def test_a_server_that_exits_early_fails_at_once_with_its_log(tmp_path):
    t0 = time.monotonic()
    with pytest.raises(AssertionError, match=r"(?s)streamlit exited:.*no-such-option"):
        start_streamlit(tmp_path / "s.log", dict(os.environ), flags=["--no-such-option"])
    assert time.monotonic() - t0 < 25  # well before the 30 s health deadline
