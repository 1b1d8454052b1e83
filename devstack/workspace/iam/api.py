"""SCIM identities, OAuth M2M and service principal secrets, as databricks-sdk speaks them.

- ``/api/2.0/preview/scim/v2/{Me,Users,Groups,ServicePrincipals}`` (``w.current_user``,
  ``w.users``, ``w.groups``, ``w.service_principals``);
- ``/api/2.0/accounts/servicePrincipals/{id}/credentials/secrets``
  (``w.service_principal_secrets_proxy``): the OAuth secrets of ``/oidc/v1/token``;
- ``/oidc/v1/token`` and ``/oidc/.well-known/oauth-authorization-server`` (databricks-sdk's
  ``oauth-m2m``, the provider's ``service_principal_oauth``), and ``/.well-known/databricks-config``
  advertising them.

Request authentication itself is :meth:`Identities.authenticate`, which the HTTP front
(devstack.workspace.http.auth) calls with ``Workspace.iam`` before any ``/api/`` route.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from devstack.workspace.context import WorkspaceContext
from devstack.workspace.http import Request, Response, invalid, raw_body
from devstack.workspace.iam.backend import (
    EntraTrust,
    Identities,
    OAuthError,
    Principal,
    ScimError,
    denied,
)

SCIM = "preview/scim/v2"
SECRETS_PATH = "accounts/servicePrincipals/{sp}/credentials/secrets"
LIST_SCHEMA = ["urn:ietf:params:scim:api:messages:2.0:ListResponse"]


def build_identities(ctx: WorkspaceContext, on_new_principal: Callable[[Principal], None]) -> Identities:
    """The workspace's identities, trusting the Entra tenant its context names (if any).

    :param on_new_principal: called with each new principal and the admin (its home folder).
    """
    entra = None
    if ctx.entra_url:
        if not ctx.entra_tenant_id:
            raise ValueError(
                "--entra-url needs --entra-tenant-id: the tenant whose tokens this workspace accepts"
            )
        entra = EntraTrust(ctx.entra_url, ctx.entra_tenant_id, ctx.entra_ca_file)
    identities = Identities(
        ctx.store,
        workspace_name=ctx.name,
        pat=ctx.token,
        entra=entra,
        azure_resource_id=ctx.azure_resource_id,
        on_new_principal=on_new_principal,
    )
    on_new_principal(identities.admin)
    return identities


def _list_response(request: Request, docs: list[dict[str, Any]]) -> dict[str, Any]:
    start = max(request.get("startIndex", int, 1) or 1, 1)
    count = request.get("count", int, 10_000)
    count = 10_000 if count is None else max(count, 0)
    page = docs[start - 1 : start - 1 + count]
    attributes = request.get("attributes", str)
    if attributes:
        keep = {a.strip() for a in attributes.split(",")} | {"id"}
        page = [{k: v for k, v in d.items() if k in keep} for d in page]
    excluded = request.get("excludedAttributes", str)
    if excluded:
        drop = {a.strip() for a in excluded.split(",")} - {"id"}
        page = [{k: v for k, v in d.items() if k not in drop} for d in page]
    return {
        "totalResults": len(docs),
        "startIndex": start,
        "itemsPerPage": len(page),
        "Resources": page,
        "schemas": LIST_SCHEMA,
    }


def _operations(request: Request) -> list[dict[str, Any]]:
    ops = request.get("Operations", list) or []
    if not all(isinstance(op, dict) for op in ops):
        raise ScimError(400, "Operations must be a list of objects with op, path and value.", "invalidSyntax")
    return ops


def _base_url(request: Request) -> str:
    host = request.headers.get("host", "127.0.0.1")
    return f"{request.scheme}://{host}"


def _lifetime_seconds(request: Request) -> int | None:
    lifetime = request.get("lifetime", str)
    if not lifetime:
        return None
    text = lifetime.rstrip("s")
    if not text.isdigit() or int(text) <= 0:
        raise invalid(f"Invalid value for field lifetime: {lifetime!r}; give seconds such as '3600s'.")
    return int(text)


class PrincipalsApi:
    """SCIM calls on one kind of principal (``Users`` or ``ServicePrincipals``)."""

    def __init__(self, identities: Identities, kind: str, create: Callable[[dict[str, Any]], dict[str, Any]]):
        self.identities = identities
        self.kind = kind
        self._create = create

    def list(self, request: Request) -> dict[str, Any]:
        return _list_response(request, self.identities.list_principals(self.kind, request.get("filter", str)))

    def create(self, request: Request) -> dict[str, Any]:
        return self._create(request.body)

    def get(self, request: Request) -> dict[str, Any]:
        return self.identities.scim_principal(request.path_params["id"], self.kind)

    def replace(self, request: Request) -> dict[str, Any]:
        return self.identities.replace_principal(request.path_params["id"], self.kind, request.body)

    def patch(self, request: Request) -> None:
        self.identities.patch_principal(request.path_params["id"], self.kind, _operations(request))

    def delete(self, request: Request) -> None:
        self.identities.delete_principal(request.path_params["id"], self.kind)


class IamApi:
    """Discovery, OAuth tokens, SCIM and service principal secrets of one workspace's identities."""

    def __init__(self, identities: Identities, *, workspace_id: str):
        self.identities = identities
        self.workspace_id = workspace_id
        self.users = PrincipalsApi(identities, "user", identities.create_user)
        self.service_principals = PrincipalsApi(
            identities, "service_principal", identities.create_service_principal
        )

    # ------------------------------------------------------------------ discovery and OAuth

    def host_metadata(self, request: Request) -> dict[str, Any]:
        # databricks-sdk reads this at client creation; oauth-m2m takes its discovery URL from
        # oidc_endpoint (databricks/sdk/config.py, _resolve_host_metadata).
        return {"workspace_id": self.workspace_id, "oidc_endpoint": f"{_base_url(request)}/oidc"}

    def authorization_server(self, request: Request) -> dict[str, Any]:
        base = _base_url(request)
        return {
            "issuer": f"{base}/oidc",
            "authorization_endpoint": f"{base}/oidc/v1/authorize",
            "token_endpoint": f"{base}/oidc/v1/token",
            "jwks_uri": f"{base}/oidc/jwks.json",
            "grant_types_supported": ["client_credentials"],
            "response_types_supported": ["code"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "scopes_supported": ["all-apis", "offline_access", "sql"],
        }

    @raw_body  # an RFC 6749 form body (application/x-www-form-urlencoded), not JSON
    def oauth_token(self, request: Request) -> Response:
        form = {k: v[-1] for k, v in parse_qs(request.raw_body.decode("utf-8", "replace")).items()}
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        scheme, _, value = (request.headers.get("authorization") or "").partition(" ")
        if scheme.lower() == "basic":
            try:
                basic_id, _, basic_secret = base64.b64decode(value).decode().partition(":")
                client_id, client_secret = client_id or basic_id, client_secret or basic_secret
            except (binascii.Error, UnicodeDecodeError):
                pass
        try:
            if form.get("grant_type") != "client_credentials":
                raise OAuthError(
                    400,
                    "unsupported_grant_type",
                    f"Unsupported grant_type {form.get('grant_type')!r}: use client_credentials with a service principal's OAuth secret.",
                )
            answer = self.identities.client_credentials(client_id, client_secret, form.get("scope"))
        except OAuthError as exc:
            body = {"error": exc.error, "error_description": exc.description}
            return Response(json.dumps(body).encode(), "application/json", exc.status)
        return Response(json.dumps(answer).encode(), "application/json", 200, {"Cache-Control": "no-store"})

    # ------------------------------------------------------------------ SCIM

    def me(self, request: Request) -> dict[str, Any]:
        return self.identities.me(request.principal)

    def list_groups(self, request: Request) -> dict[str, Any]:
        return _list_response(request, self.identities.list_groups(request.get("filter", str)))

    def create_group(self, request: Request) -> dict[str, Any]:
        return self.identities.create_group(request.body)

    def get_group(self, request: Request) -> dict[str, Any]:
        return self.identities.scim_group(request.path_params["id"])

    def replace_group(self, request: Request) -> dict[str, Any]:
        return self.identities.replace_group(request.path_params["id"], request.body)

    def patch_group(self, request: Request) -> None:
        self.identities.patch_group(request.path_params["id"], _operations(request))

    def delete_group(self, request: Request) -> None:
        self.identities.delete_group(request.path_params["id"])

    # ------------------------------------------------------------------ service principal secrets

    def create_secret(self, request: Request) -> dict[str, Any]:
        return self.identities.create_secret(request.path_params["sp"], _lifetime_seconds(request))

    def register_secret(self, request: Request) -> dict[str, Any]:
        """Devstack only: an OAuth secret of a value chosen in advance (compose's static connections).

        Databricks makes every secret value up itself, so no client of the real API sends one;
        only the workspace admin (its personal access token) may. The value is not echoed.
        """
        if request.principal is None or request.principal.id != self.identities.admin.id:
            raise denied(
                "Only the workspace admin (the workspace's personal access token) may register an OAuth "
                f"secret of a chosen value; other callers create one with POST /api/2.0/{SECRETS_PATH}."
            )
        info = self.identities.create_secret(
            request.path_params["sp"], _lifetime_seconds(request), secret=request.require("secret", str)
        )
        info.pop("secret")
        return info

    def list_secrets(self, request: Request) -> dict[str, Any]:
        return {"secrets": self.identities.list_secrets(request.path_params["sp"])}

    def delete_secret(self, request: Request) -> None:
        self.identities.delete_secret(request.path_params["sp"], request.path_params["secret"])
