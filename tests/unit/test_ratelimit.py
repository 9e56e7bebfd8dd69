"""The API client's token bucket (client-go's QPS and burst)."""

from __future__ import annotations

import pytest

from klambda.kube.ratelimit import TokenBucket


def test_burst_then_qps() -> None:
    now = [0.0]
    bucket = TokenBucket(qps=10, burst=3, clock=lambda: now[0])
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.reserve() == pytest.approx(0.1)  # the 4th waits for one refill
    assert bucket.reserve() == pytest.approx(0.2)  # the 5th queues behind it
    now[0] = 10.0  # a long pause refills to burst, no more
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.reserve() > 0


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        TokenBucket(qps=0, burst=1)
