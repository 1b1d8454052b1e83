"""Secrets API 2.0: Databricks-backed secret scopes, secrets and scope ACLs.

Values are kept in the workspace's SQLite store (so they survive a restart) and are only ever
returned by ``GET /api/2.0/secrets/get``, the call ``dbutils.secrets.get`` makes.
"""

from __future__ import annotations

import base64
import binascii
import re
import time

from devstack.workspace.context import WorkspaceContext
from devstack.workspace.http import ApiError, Request, already_exists, invalid, not_found

SCHEMA = """
CREATE TABLE IF NOT EXISTS secret_scopes (
    name         TEXT PRIMARY KEY,
    backend_type TEXT NOT NULL,
    created_at   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS secrets (
    scope                  TEXT NOT NULL REFERENCES secret_scopes(name) ON DELETE CASCADE,
    key                    TEXT NOT NULL,
    value                  BLOB NOT NULL,
    last_updated_timestamp INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE TABLE IF NOT EXISTS secret_acls (
    scope      TEXT NOT NULL REFERENCES secret_scopes(name) ON DELETE CASCADE,
    principal  TEXT NOT NULL,
    permission TEXT NOT NULL,
    PRIMARY KEY (scope, principal)
);
"""

SCOPE_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,128}$")
KEY_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
MAX_VALUE_BYTES = 128 * 1024
PERMISSIONS = ("READ", "WRITE", "MANAGE")
# The caller of every API call; the emulator has one user, who manages what it creates.
CREATOR = "devstack-user"


def register(router, ctx: WorkspaceContext) -> None:
    store = ctx.store
    store.ensure_schema(SCHEMA)

    def scope_param(req: Request) -> str:
        scope = req.require("scope", str)
        if store.one("SELECT 1 FROM secret_scopes WHERE name = ?", (scope,)) is None:
            raise not_found(f"Scope {scope} does not exist! Create it with secrets/scopes/create first.")
        return scope

    def create_scope(req: Request):
        scope = req.require("scope", str)
        if not SCOPE_NAME.match(scope):
            raise invalid(
                f"Invalid value for field scope: {scope!r}. Scope names use letters, digits, '-', '_', '.' "
                "and '@', at most 128 characters."
            )
        backend = (req.get("scope_backend_type", str) or "DATABRICKS").upper()
        if backend != "DATABRICKS":
            raise invalid(
                f"Invalid value for field scope_backend_type: {backend} scopes are not emulated; create a "
                "DATABRICKS scope and put the secrets into it."
            )
        principal = req.get("initial_manage_principal", str)
        if principal not in (None, "users"):
            raise invalid(
                f"Invalid value for field initial_manage_principal: {principal!r}; only 'users' is allowed."
            )
        with store.tx() as conn:
            if conn.execute("SELECT 1 FROM secret_scopes WHERE name = ?", (scope,)).fetchone():
                raise already_exists(f"Scope {scope} already exists!")
            conn.execute(
                "INSERT INTO secret_scopes (name, backend_type, created_at) VALUES (?, ?, ?)",
                (scope, backend, int(time.time() * 1000)),
            )
            conn.execute(
                "INSERT INTO secret_acls (scope, principal, permission) VALUES (?, ?, 'MANAGE')",
                (scope, principal or CREATOR),
            )
        return {}

    def list_scopes(req: Request):
        rows = store.all("SELECT name, backend_type FROM secret_scopes ORDER BY name")
        return (
            {"scopes": [{"name": r["name"], "backend_type": r["backend_type"]} for r in rows]} if rows else {}
        )

    def delete_scope(req: Request):
        scope = scope_param(req)
        with store.tx() as conn:
            conn.execute("DELETE FROM secret_scopes WHERE name = ?", (scope,))
        return {}

    def put(req: Request):
        scope = scope_param(req)
        key = req.require("key", str)
        if not KEY_NAME.match(key):
            raise invalid(
                f"Invalid value for field key: {key!r}. Keys use letters, digits, '-', '_' and '.', at most "
                "128 characters."
            )
        string_value = req.get("string_value", str)
        bytes_value = req.get("bytes_value", str)
        if (string_value is None) == (bytes_value is None):
            raise invalid("Exactly one of string_value or bytes_value must be specified.")
        if string_value is not None:
            value = string_value.encode("utf-8")
        else:
            try:
                value = base64.b64decode(bytes_value, validate=True)
            except (binascii.Error, ValueError):
                raise invalid("Invalid value for field bytes_value: it is not valid base64.") from None
        if len(value) > MAX_VALUE_BYTES:
            raise ApiError(
                400, "RESOURCE_LIMIT_EXCEEDED", f"The value of secret {scope}/{key} exceeds the 128 KB limit."
            )
        with store.tx() as conn:
            conn.execute(
                "INSERT INTO secrets (scope, key, value, last_updated_timestamp) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value, "
                "last_updated_timestamp = excluded.last_updated_timestamp",
                (scope, key, value, int(time.time() * 1000)),
            )
        return {}

    def list_secrets(req: Request):
        scope = scope_param(req)
        rows = store.all(
            "SELECT key, last_updated_timestamp FROM secrets WHERE scope = ? ORDER BY key", (scope,)
        )
        if not rows:
            return {}
        return {
            "secrets": [
                {"key": r["key"], "last_updated_timestamp": r["last_updated_timestamp"]} for r in rows
            ]
        }

    def secret_row(req: Request):
        scope = scope_param(req)
        key = req.require("key", str)
        row = store.one("SELECT key, value FROM secrets WHERE scope = ? AND key = ?", (scope, key))
        if row is None:
            raise not_found(f"Secret {key} does not exist in scope {scope}.")
        return scope, row

    def get(req: Request):
        _, row = secret_row(req)
        return {"key": row["key"], "value": base64.b64encode(bytes(row["value"])).decode("ascii")}

    def delete(req: Request):
        scope, row = secret_row(req)
        with store.tx() as conn:
            conn.execute("DELETE FROM secrets WHERE scope = ? AND key = ?", (scope, row["key"]))
        return {}

    def put_acl(req: Request):
        scope = scope_param(req)
        principal = req.require("principal", str)
        permission = req.require("permission", str).upper()
        if permission not in PERMISSIONS:
            raise invalid(
                f"Invalid value for field permission: {permission!r}; expected READ, WRITE or MANAGE."
            )
        with store.tx() as conn:
            conn.execute(
                "INSERT INTO secret_acls (scope, principal, permission) VALUES (?, ?, ?) "
                "ON CONFLICT (scope, principal) DO UPDATE SET permission = excluded.permission",
                (scope, principal, permission),
            )
        return {}

    def acl_row(req: Request):
        scope = scope_param(req)
        principal = req.require("principal", str)
        row = store.one(
            "SELECT principal, permission FROM secret_acls WHERE scope = ? AND principal = ?",
            (scope, principal),
        )
        if row is None:
            raise not_found(f"No ACL for principal {principal} on scope {scope}.")
        return scope, row

    def get_acl(req: Request):
        _, row = acl_row(req)
        return {"principal": row["principal"], "permission": row["permission"]}

    def list_acls(req: Request):
        scope = scope_param(req)
        rows = store.all(
            "SELECT principal, permission FROM secret_acls WHERE scope = ? ORDER BY principal", (scope,)
        )
        return (
            {"items": [{"principal": r["principal"], "permission": r["permission"]} for r in rows]}
            if rows
            else {}
        )

    def delete_acl(req: Request):
        scope, row = acl_row(req)
        with store.tx() as conn:
            conn.execute(
                "DELETE FROM secret_acls WHERE scope = ? AND principal = ?", (scope, row["principal"])
            )
        return {}

    router.add("POST", "2.0", "/secrets/scopes/create", create_scope)
    router.add("GET", "2.0", "/secrets/scopes/list", list_scopes)
    router.add("POST", "2.0", "/secrets/scopes/delete", delete_scope)
    router.add("POST", "2.0", "/secrets/put", put)
    router.add("GET", "2.0", "/secrets/list", list_secrets)
    router.add("GET", "2.0", "/secrets/get", get)
    router.add("POST", "2.0", "/secrets/delete", delete)
    router.add("POST", "2.0", "/secrets/acls/put", put_acl)
    router.add("GET", "2.0", "/secrets/acls/get", get_acl)
    router.add("GET", "2.0", "/secrets/acls/list", list_acls)
    router.add("POST", "2.0", "/secrets/acls/delete", delete_acl)
