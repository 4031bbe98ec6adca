"""backoff_delay: the one rule of the retry loops (SendGrid, SMTP reconnects, feeds)."""

from __future__ import annotations

import math

import pytest

from newsletter.backoff import MAX_DELAY, backoff_delay


@pytest.mark.parametrize("attempt", [0, 1, 2, 3])
def test_doubles_each_attempt_within_the_jitter(attempt: int) -> None:
    for _ in range(50):
        delay = backoff_delay(attempt, 1.0)
        assert 0.5 * 2**attempt <= delay <= 1.5 * 2**attempt


def test_is_capped_and_exact_without_jitter() -> None:
    assert backoff_delay(20, 1.0) == MAX_DELAY == 60.0
    assert backoff_delay(3, 2.0, cap=5.0) == 5.0
    assert [backoff_delay(n, 0.25, cap=math.inf, jitter=False) for n in range(3)] == [0.25, 0.5, 1.0]


def test_what_the_server_asked_for_wins_as_it_is() -> None:
    assert backoff_delay(0, 1.0, retry_after=42.5) == 42.5
    assert backoff_delay(5, 1.0, cap=10.0, retry_after=30.0) == 30.0  # the caller decides whether to wait
    assert backoff_delay(0, 1.0, retry_after=-3.0) == 0.0
