"""Maps ``(method, /api/<version>/<path>)`` to handlers; ``{name}`` segments are path parameters."""

from __future__ import annotations

import re
from collections.abc import Iterable

from devstack.workspace.http.errors import ApiError
from devstack.workspace.http.request import Handler


class Router:
    """Maps (method, /api/<version>/<path>) to handlers; ``{name}`` segments are path parameters."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern, Handler]] = []
        self._paths: set[str] = set()

    def add(self, method: str, versions: Iterable[str] | str, path: str, handler: Handler) -> None:
        if isinstance(versions, str):
            versions = [versions]
        for version in versions:
            prefix = f"/api/{version}" if version else ""
            full = prefix + "/" + path.lstrip("/")
            # {name:path} takes the rest of the path, slashes included (Files API: fs/files{path}).
            pattern = re.sub(r"\{(\w+):path\}", r"(?P<\1>/.*)", full)
            pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern)
            self._routes.append((method.upper(), re.compile(f"^{pattern}/?$"), handler))
            self._paths.add(full)

    def match(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        """Find the handler, or raise 404 ENDPOINT_NOT_FOUND (405 when only the method is wrong)."""
        path_matched = False
        for route_method, pattern, handler in self._routes:
            found = pattern.match(path)
            if not found:
                continue
            path_matched = True
            if route_method == method.upper():
                return handler, found.groupdict()
        if path_matched:
            raise ApiError(405, "BAD_REQUEST", f"Method {method} is not allowed for {path}")
        raise ApiError(404, "ENDPOINT_NOT_FOUND", f"No API found for '{method} {path}'")
