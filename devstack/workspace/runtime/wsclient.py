"""Calls from the driver back to its workspace (notebook export, secrets, task values).

Stdlib urllib only, short timeouts, and retries on 429/503 honouring Retry-After: the emulated
workspace may inject faults, as the real one throttles.
"""

from __future__ import annotations

import json
import time
from typing import Any

RETRY_STATUSES = (429, 503)


class WorkspaceApiError(RuntimeError):
    """A workspace call answered with an error (after retries)."""

    def __init__(self, status: int, error_code: str, message: str):
        super().__init__(f"{error_code}: {message} (HTTP {status})")
        self.status = status
        self.error_code = error_code
        self.message = message


class WorkspaceClient:
    def __init__(
        self, url: str, token: str, *, timeout: float = 10.0, attempts: int = 6, max_wait: float = 30.0
    ):
        self.url = url.rstrip("/")
        self._token = token
        self.timeout = timeout
        self.attempts = attempts
        self.max_wait = max_wait

    def get(self, endpoint: str, /, **params: Any) -> dict:
        import urllib.parse

        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        return self._call("GET", f"{endpoint}?{query}" if query else endpoint, None)

    def post(self, endpoint: str, body: dict) -> dict:
        return self._call("POST", endpoint, body)

    def _call(self, method: str, path: str, body: dict | None) -> dict:
        # Imported on first use (the driver warms it up in the background): urllib.request
        # alone is a third of the driver's start time.
        import urllib.error
        import urllib.request

        url = self.url + path
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        waited = 0.0
        for attempt in range(1, self.attempts + 1):
            request = urllib.request.Request(url, data=data, method=method, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                    raw = resp.read()
                return json.loads(raw) if raw else {}
            except urllib.error.HTTPError as exc:
                raw = exc.read()
                if exc.code in RETRY_STATUSES and attempt < self.attempts:
                    delay = _retry_after(exc.headers.get("Retry-After"), attempt)
                    if waited + delay <= self.max_wait:
                        waited += delay
                        time.sleep(delay)
                        continue
                raise _api_error(exc.code, raw, method, path) from None
            except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
                if attempt < self.attempts and waited < self.max_wait:
                    delay = min(0.2 * attempt, 2.0)
                    waited += delay
                    time.sleep(delay)
                    continue
                raise WorkspaceApiError(
                    0, "WORKSPACE_UNREACHABLE", f"{method} {self.url}{path.split('?')[0]} failed: {exc}"
                ) from None
        raise AssertionError("unreachable")


def _retry_after(header: str | None, attempt: int) -> float:
    try:
        return max(0.0, min(float(header), 10.0)) if header else min(0.1 * 2**attempt, 2.0)
    except ValueError:
        return min(0.1 * 2**attempt, 2.0)


def _api_error(status: int, raw: bytes, method: str, path: str) -> WorkspaceApiError:
    try:
        body = json.loads(raw)
        return WorkspaceApiError(status, body.get("error_code", "UNKNOWN"), body.get("message", ""))
    except ValueError:
        text = raw.decode("utf-8", errors="replace")[:300]
        return WorkspaceApiError(status, "UNKNOWN", f"{method} {path.split('?')[0]}: {text}")
