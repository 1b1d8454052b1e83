"""Fault injection (``--fault-rate``): a fraction of API calls answered 429 or 503 with
``Retry-After``, as Databricks answers when it throttles a caller or is briefly unavailable, so
clients' retry logic (databricks-sdk, the Airflow provider) gets exercised."""

from __future__ import annotations

import random

from devstack.workspace.http.errors import ApiError

# Calls the notebook drivers make back to their workspace; never subject to fault injection.
INTERNAL_PREFIX = "/api/2.0/devstack/"


class FaultInjector:
    """Answers a ``rate`` fraction of /api/ calls with an error, half 429 and half 503."""

    def __init__(self, rate: float, rng: random.Random | None = None):
        self.rate = rate
        self.rng = rng or random.Random()

    def check(self, path: str) -> None:
        """Raise the injected error for this call, if it draws one."""
        if self.rate <= 0 or not path.startswith("/api/") or path.startswith(INTERNAL_PREFIX):
            return
        if self.rng.random() >= self.rate:
            return
        if self.rng.random() < 0.5:
            raise ApiError(
                429,
                "TOO_MANY_REQUESTS",
                "Too many requests (injected by --fault-rate).",
                {"Retry-After": "1"},
            )
        raise ApiError(
            503,
            "TEMPORARILY_UNAVAILABLE",
            "Service unavailable (injected by --fault-rate).",
            {"Retry-After": "1"},
        )
