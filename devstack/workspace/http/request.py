"""One API call as handlers see it (:class:`Request`), a non-JSON answer (:class:`Response`), and
the parameter rules shared by every API module (type coercion, pagination, raw bodies)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from devstack.workspace.http.errors import invalid

_MISSING = object()


@dataclass
class Response:
    """A non-JSON answer (the HTML run page, for instance)."""

    body: bytes
    content_type: str = "text/html; charset=utf-8"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Request:
    """One API call. GET parameters may arrive in the query string or in a JSON body."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: dict[str, Any]
    headers: dict[str, str]
    path_params: dict[str, str] = field(default_factory=dict)
    # The undecoded body, for handlers marked with :func:`raw_body` (file uploads).
    raw_body: bytes = b""
    # The authenticated caller (devstack.workspace.iam Principal) of an /api/ call; None elsewhere.
    principal: Any = None
    # "https" when the call came over TLS (links the workspace hands out use it).
    scheme: str = "http"

    def _raw(self, name: str) -> Any:
        if name in self.body:
            return self.body[name]
        if name in self.query:
            values = self.query[name]
            return values[0] if len(values) == 1 else values
        return _MISSING

    def has(self, name: str) -> bool:
        return self._raw(name) is not _MISSING

    def get(self, name: str, kind: type | None = None, default: Any = None, *, required: bool = False) -> Any:
        """Read parameter ``name``; strings from a query string are converted to ``kind``.

        Raises INVALID_PARAMETER_VALUE naming the field when it is missing (and required)
        or of the wrong type.
        """
        value = self._raw(name)
        if value is _MISSING or value is None:
            if required:
                raise invalid(f"Missing required field: {name}")
            return default
        if kind is None:
            return value
        return coerce(name, value, kind)

    def require(self, name: str, kind: type | None = None) -> Any:
        return self.get(name, kind, required=True)


def pagination(request: Request, *, default_limit: int, max_limit: int) -> tuple[int, int]:
    """(limit, offset) of a list call: ``limit``/``offset``, or the ``page_token`` we handed out."""
    limit = request.get("limit", int, default_limit) or default_limit
    if not 1 <= limit <= max_limit:
        raise invalid(f"Invalid value for field limit: must be between 1 and {max_limit}")
    offset = request.get("offset", int, 0) or 0
    token = request.get("page_token", str) or ""
    if token:
        if not token.isdigit():
            raise invalid(f"Invalid value for field page_token: {token!r} is not a token this API returned")
        offset = int(token)
    return limit, offset


def coerce(name: str, value: Any, kind: type) -> Any:
    """Convert ``value`` to ``kind`` as Databricks does for query strings, or fail naming ``name``."""
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            raise ValueError
        if kind is int:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, int):
                return value
            if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
                return int(value)
            raise ValueError
        if kind is str:
            if isinstance(value, (dict, list)):
                raise ValueError
            return str(value)
        if kind is dict:
            if not isinstance(value, dict):
                raise ValueError
            return value
        if kind is list:
            if not isinstance(value, list):
                raise ValueError
            return value
    except ValueError:
        pass
    else:
        return value
    raise invalid(f"Invalid value for field {name}: expected {kind.__name__}, got {value!r}")


Handler = Callable[[Request], Any]


def raw_body(handler: Handler) -> Handler:
    """Mark a handler whose body is file content: the server hands it over undecoded."""
    handler.raw_body = True  # type: ignore[attr-defined]
    return handler
