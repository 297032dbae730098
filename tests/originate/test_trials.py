"""originate/trials.py: the test calls' slots are given back whatever happens while one is
taken, so a failure can never leave a portal "already running" or every portal "busy"."""

from __future__ import annotations

import pytest
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import MovingWindowRateLimiter
from redis.exceptions import ConnectionError as RedisConnectionError

from b24app.originate.trials import Trials
from tests.drills.processes import free_port


def test_a_rate_storage_that_fails_gives_the_slot_back() -> None:
    """The limiter's storage is Redis and Redis is down: that test call fails with the error,
    and once Redis is back the portal, and any other, may test again."""
    down = storage_from_string(f"redis://127.0.0.1:{free_port()}")
    running = Trials(MovingWindowRateLimiter(down))
    with pytest.raises(RedisConnectionError):
        running.begin("alpha")

    running.rates = MovingWindowRateLimiter(MemoryStorage())  # Redis is back
    assert running.begin("alpha") is None
    running.end("alpha")
    assert running.begin("beta") is None
