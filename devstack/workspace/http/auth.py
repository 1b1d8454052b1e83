"""The sign-in step the server takes before every ``/api/`` call.

The caller must present a credential the workspace accepts: a personal access token, an Entra
ID token of the workspace's tenant, or an OAuth token the workspace issued (the rules live in
devstack.workspace.iam). Anything else is answered 401 or 403 before a handler runs. Paths
outside ``/api/`` (sign-in discovery, the OAuth token endpoint, the run page, presigned file
URLs, serving invocations) check their own credentials or need none.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

API_PREFIX = "/api/"


class Identities(Protocol):
    def authenticate(self, headers: Mapping[str, str]) -> Any: ...


class Authenticator:
    """Who calls: the principal of an ``/api/`` call (raises ApiError 401/403), None elsewhere."""

    def __init__(self, identities: Identities):
        self.identities = identities

    def __call__(self, path: str, headers: Mapping[str, str]) -> Any:
        """``headers`` with lower-case names."""
        if not path.startswith(API_PREFIX):
            return None
        return self.identities.authenticate(headers)
