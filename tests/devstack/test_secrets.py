"""Secrets API of the emulated workspace, through databricks-sdk over real HTTP."""

from __future__ import annotations

import base64
import uuid

import pytest
import requests
from databricks.sdk.errors import NotFound, ResourceAlreadyExists
from databricks.sdk.service.workspace import AclPermission, ScopeBackendType


@pytest.fixture
def scope(ws_sdk) -> str:
    name = f"scope-{uuid.uuid4().hex[:8]}"
    ws_sdk.secrets.create_scope(name)
    return name


def api(workspace, method: str, endpoint: str, **kwargs) -> requests.Response:
    headers = {"Authorization": f"Bearer {workspace.token}"}
    return requests.request(
        method, f"{workspace.url}/api/2.0/{endpoint}", headers=headers, timeout=10, **kwargs
    )


def test_secret_values_are_readable_only_through_get(ws_sdk, workspace, scope):
    ws_sdk.secrets.put_secret(scope, "db-password", string_value="s3cret")
    ws_sdk.secrets.put_secret(scope, "cert", bytes_value=base64.b64encode(b"\x00\x01binary").decode())

    assert base64.b64decode(ws_sdk.secrets.get_secret(scope, "db-password").value) == b"s3cret"
    assert base64.b64decode(ws_sdk.secrets.get_secret(scope, "cert").value) == b"\x00\x01binary"
    listed = {s.key: s.last_updated_timestamp for s in ws_sdk.secrets.list_secrets(scope)}
    assert set(listed) == {"db-password", "cert"} and all(ts > 0 for ts in listed.values())
    raw = api(workspace, "GET", "secrets/list", params={"scope": scope}).text
    assert "s3cret" not in raw and base64.b64encode(b"s3cret").decode() not in raw

    ws_sdk.secrets.put_secret(scope, "db-password", string_value="rotated")
    assert base64.b64decode(ws_sdk.secrets.get_secret(scope, "db-password").value) == b"rotated"


def test_scope_lifecycle(ws_sdk, scope):
    scopes = {s.name: s.backend_type for s in ws_sdk.secrets.list_scopes()}
    assert scopes[scope] == ScopeBackendType.DATABRICKS
    with pytest.raises(ResourceAlreadyExists, match=scope):
        ws_sdk.secrets.create_scope(scope)

    ws_sdk.secrets.put_secret(scope, "k", string_value="v")
    ws_sdk.secrets.delete_secret(scope, "k")
    with pytest.raises(NotFound, match="k"):
        ws_sdk.secrets.get_secret(scope, "k")

    ws_sdk.secrets.delete_scope(scope)
    assert scope not in {s.name for s in ws_sdk.secrets.list_scopes()}
    with pytest.raises(NotFound, match=scope):
        list(ws_sdk.secrets.list_secrets(scope))


def test_scope_acls(ws_sdk, scope):
    ws_sdk.secrets.put_acl(scope, "data-scientists", AclPermission.READ)
    assert ws_sdk.secrets.get_acl(scope, "data-scientists").permission == AclPermission.READ
    acls = {a.principal: a.permission for a in ws_sdk.secrets.list_acls(scope)}
    assert acls["data-scientists"] == AclPermission.READ
    assert AclPermission.MANAGE in acls.values()  # the creator manages the scope
    ws_sdk.secrets.delete_acl(scope, "data-scientists")
    with pytest.raises(NotFound, match="data-scientists"):
        ws_sdk.secrets.get_acl(scope, "data-scientists")


def test_unknown_scope_or_key_is_not_found_naming_it(ws_sdk, scope):
    with pytest.raises(NotFound, match="no-such-scope"):
        ws_sdk.secrets.get_secret("no-such-scope", "k")
    with pytest.raises(NotFound, match="no-such-scope"):
        ws_sdk.secrets.put_secret("no-such-scope", "k", string_value="v")
    with pytest.raises(NotFound, match="no-such-key"):
        ws_sdk.secrets.get_secret(scope, "no-such-key")


@pytest.mark.parametrize(
    ("endpoint", "body", "field"),
    [
        ("secrets/put", {"key": "k", "string_value": "v"}, "scope"),
        ("secrets/put", {"scope": "{scope}", "string_value": "v"}, "key"),
        ("secrets/put", {"scope": "{scope}", "key": "bad key!", "string_value": "v"}, "key"),
        (
            "secrets/put",
            {"scope": "{scope}", "key": "k", "string_value": "v", "bytes_value": "dg=="},
            "string_value",
        ),
        ("secrets/put", {"scope": "{scope}", "key": "k", "bytes_value": "***"}, "bytes_value"),
        ("secrets/put", {"scope": "{scope}", "key": "k", "string_value": ["v"]}, "string_value"),
        ("secrets/scopes/create", {"scope": "has space"}, "scope"),
        (
            "secrets/scopes/create",
            {"scope": "x", "scope_backend_type": "AZURE_KEYVAULT"},
            "scope_backend_type",
        ),
    ],
)
def test_bad_secret_input_names_the_field(workspace, scope, endpoint, body, field):
    body = {k: (v.format(scope=scope) if isinstance(v, str) else v) for k, v in body.items()}
    resp = api(workspace, "POST", endpoint, json=body)
    assert resp.status_code == 400
    assert resp.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert field in resp.json()["message"]
