"""Per-token and per-address request limits, on the ``limits`` library.

One `RequestLimiter` per app. Each worker process counts on its own with the default
``memory://`` storage (so N workers allow up to N times the limit); point
``rate_limit_storage_uri`` at ``redis://...`` to share the counts across workers and hosts.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from pitahaya.registry.errors import RateLimitedError


class RequestLimiter:
    """Refuses a caller that went over its limit with `RateLimitedError` (429 + Retry-After).

    Args:
        per_token: Limit per API token name, in ``limits`` syntax (``"600/minute"``).
        per_ip: Limit per client address.
        storage_uri: Where counts live (``memory://``, ``redis://host:6379``, ...).
    """

    def __init__(self, per_token: str, per_ip: str, storage_uri: str = "memory://") -> None:
        self._limiter = MovingWindowRateLimiter(storage_from_string(storage_uri))
        self._per_token = parse(per_token)
        self._per_ip = parse(per_ip)

    def hit_token(self, name: str) -> None:
        """Count one request by token ``name``.

        Raises:
            RateLimitedError: the token is over its limit.
        """
        self._hit(self._per_token, "token", name)

    def hit_ip(self, address: str) -> None:
        """Count one request from ``address``.

        Raises:
            RateLimitedError: the address is over its limit.
        """
        self._hit(self._per_ip, "ip", address)

    def _hit(self, limit: RateLimitItem, kind: str, key: str) -> None:
        if self._limiter.hit(limit, kind, key):
            return
        stats = self._limiter.get_window_stats(limit, kind, key)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise RateLimitedError(f"rate limit of {limit} per {kind} exceeded; retry in {retry_after} s", retry_after)
