"""Databricks-backed secret scopes, secrets and scope ACLs (the state behind the Secrets API 2.0).

Values are kept in the workspace's SQLite store (so they survive a restart) and are only ever
returned by :meth:`SecretsBackend.get`, behind ``GET /api/2.0/secrets/get``, the call
``dbutils.secrets.get`` makes.
"""

from __future__ import annotations

import re
import time
from typing import Any

from devstack.workspace.http import ApiError, already_exists, invalid, not_found
from devstack.workspace.iam.backend import ADMIN_USER
from devstack.workspace.store import Store

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


class SecretsBackend:
    """Secret scopes of one workspace.

    :param store: the workspace's store (tables ``secret_scopes``, ``secrets``, ``secret_acls``).
    """

    def __init__(self, store: Store):
        self.store = store
        store.ensure_schema(SCHEMA)

    def _existing_scope(self, scope: str) -> str:
        if self.store.one("SELECT 1 FROM secret_scopes WHERE name = ?", (scope,)) is None:
            raise not_found(f"Scope {scope} does not exist! Create it with secrets/scopes/create first.")
        return scope

    # ------------------------------------------------------------------ scopes

    def create_scope(
        self,
        scope: str,
        backend_type: str | None,
        initial_manage_principal: str | None,
        creator: str = ADMIN_USER,
    ) -> None:
        """A new scope; ``creator`` (a user name or a service principal's application id) gets MANAGE
        on it, or the ``users`` group does when ``initial_manage_principal`` names it."""
        if not SCOPE_NAME.match(scope):
            raise invalid(
                f"Invalid value for field scope: {scope!r}. Scope names use letters, digits, '-', '_', '.' "
                "and '@', at most 128 characters."
            )
        backend = (backend_type or "DATABRICKS").upper()
        if backend != "DATABRICKS":
            raise invalid(
                f"Invalid value for field scope_backend_type: {backend} scopes are not emulated; create a "
                "DATABRICKS scope and put the secrets into it."
            )
        principal = initial_manage_principal
        if principal not in (None, "users"):
            raise invalid(
                f"Invalid value for field initial_manage_principal: {principal!r}; only 'users' is allowed."
            )
        with self.store.tx() as conn:
            if conn.execute("SELECT 1 FROM secret_scopes WHERE name = ?", (scope,)).fetchone():
                raise already_exists(f"Scope {scope} already exists!")
            conn.execute(
                "INSERT INTO secret_scopes (name, backend_type, created_at) VALUES (?, ?, ?)",
                (scope, backend, int(time.time() * 1000)),
            )
            conn.execute(
                "INSERT INTO secret_acls (scope, principal, permission) VALUES (?, ?, 'MANAGE')",
                (scope, principal or creator),
            )

    def list_scopes(self) -> list[dict[str, Any]]:
        rows = self.store.all("SELECT name, backend_type FROM secret_scopes ORDER BY name")
        return [{"name": r["name"], "backend_type": r["backend_type"]} for r in rows]

    def delete_scope(self, scope: str) -> None:
        self._existing_scope(scope)
        with self.store.tx() as conn:
            conn.execute("DELETE FROM secret_scopes WHERE name = ?", (scope,))

    # ------------------------------------------------------------------ secrets

    def put(self, scope: str, key: str, value: bytes) -> None:
        self._existing_scope(scope)
        if not KEY_NAME.match(key):
            raise invalid(
                f"Invalid value for field key: {key!r}. Keys use letters, digits, '-', '_' and '.', at most "
                "128 characters."
            )
        if len(value) > MAX_VALUE_BYTES:
            raise ApiError(
                400, "RESOURCE_LIMIT_EXCEEDED", f"The value of secret {scope}/{key} exceeds the 128 KB limit."
            )
        with self.store.tx() as conn:
            conn.execute(
                "INSERT INTO secrets (scope, key, value, last_updated_timestamp) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value, "
                "last_updated_timestamp = excluded.last_updated_timestamp",
                (scope, key, value, int(time.time() * 1000)),
            )

    def list_secrets(self, scope: str) -> list[dict[str, Any]]:
        self._existing_scope(scope)
        rows = self.store.all(
            "SELECT key, last_updated_timestamp FROM secrets WHERE scope = ? ORDER BY key", (scope,)
        )
        return [{"key": r["key"], "last_updated_timestamp": r["last_updated_timestamp"]} for r in rows]

    def _secret_row(self, scope: str, key: str):
        self._existing_scope(scope)
        row = self.store.one("SELECT key, value FROM secrets WHERE scope = ? AND key = ?", (scope, key))
        if row is None:
            raise not_found(f"Secret {key} does not exist in scope {scope}.")
        return row

    def get(self, scope: str, key: str) -> bytes:
        """The value of secret ``key`` in ``scope``."""
        return bytes(self._secret_row(scope, key)["value"])

    def delete(self, scope: str, key: str) -> None:
        row = self._secret_row(scope, key)
        with self.store.tx() as conn:
            conn.execute("DELETE FROM secrets WHERE scope = ? AND key = ?", (scope, row["key"]))

    # ------------------------------------------------------------------ ACLs

    def put_acl(self, scope: str, principal: str, permission: str) -> None:
        self._existing_scope(scope)
        permission = permission.upper()
        if permission not in PERMISSIONS:
            raise invalid(
                f"Invalid value for field permission: {permission!r}; expected READ, WRITE or MANAGE."
            )
        with self.store.tx() as conn:
            conn.execute(
                "INSERT INTO secret_acls (scope, principal, permission) VALUES (?, ?, ?) "
                "ON CONFLICT (scope, principal) DO UPDATE SET permission = excluded.permission",
                (scope, principal, permission),
            )

    def get_acl(self, scope: str, principal: str) -> dict[str, str]:
        self._existing_scope(scope)
        row = self.store.one(
            "SELECT principal, permission FROM secret_acls WHERE scope = ? AND principal = ?",
            (scope, principal),
        )
        if row is None:
            raise not_found(f"No ACL for principal {principal} on scope {scope}.")
        return {"principal": row["principal"], "permission": row["permission"]}

    def list_acls(self, scope: str) -> list[dict[str, str]]:
        self._existing_scope(scope)
        rows = self.store.all(
            "SELECT principal, permission FROM secret_acls WHERE scope = ? ORDER BY principal", (scope,)
        )
        return [{"principal": r["principal"], "permission": r["permission"]} for r in rows]

    def delete_acl(self, scope: str, principal: str) -> None:
        acl = self.get_acl(scope, principal)
        with self.store.tx() as conn:
            conn.execute(
                "DELETE FROM secret_acls WHERE scope = ? AND principal = ?", (scope, acl["principal"])
            )
