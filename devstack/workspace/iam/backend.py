"""Who may call the workspace: users, groups, service principals, their secrets and tokens.

Rules, no HTTP. Accepted credentials (:meth:`Identities.authenticate`):

- the workspace's personal access token (``--token``): the admin user;
- tokens this workspace issued: Databricks OAuth from ``/oidc/v1/token`` (a service principal's
  client id + OAuth secret) and the short-lived ones of :meth:`Identities.issue_token`;
- Entra ID access tokens (RS256 JWTs) of the tenant the workspace trusts: signature against the
  tenant's JWKS, expiry, audience = the Azure Databricks resource. The service principal must
  have been added to the workspace (SCIM ServicePrincipals), unless the call also carries a valid
  Azure management token and the workspace's resource id, as Azure lets a Contributor of the
  workspace resource in (it is then added on first sign-in).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import re
import secrets
import ssl
import threading
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from devstack.workspace.http import ApiError
from devstack.workspace.store import Store, dumps, loads

log = logging.getLogger("devstack.workspace.iam")

DATABRICKS_RESOURCE = "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d"
MANAGEMENT_AUDIENCES = ("https://management.core.windows.net/", "https://management.azure.com/")
ADMIN_USER = "admin@devstack.local"
OAUTH_TOKEN_TTL = 3600
SECRET_LIFETIME = 730 * 24 * 3600  # Databricks' default OAuth secret lifetime (730 days)

SCHEMA = """
CREATE TABLE IF NOT EXISTS iam_principals (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,               -- 'user' | 'service_principal'
    name TEXT NOT NULL UNIQUE,        -- userName, or applicationId
    display_name TEXT,
    active INTEGER NOT NULL DEFAULT 1,
    external_id TEXT,
    doc TEXT NOT NULL DEFAULT '{}'    -- other SCIM attributes (emails, name, entitlements, roles)
);
CREATE TABLE IF NOT EXISTS iam_groups (
    id TEXT PRIMARY KEY,
    display_name TEXT NOT NULL UNIQUE,
    external_id TEXT,
    doc TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS iam_members (
    group_id TEXT NOT NULL REFERENCES iam_groups(id) ON DELETE CASCADE,
    member_id TEXT NOT NULL,
    PRIMARY KEY (group_id, member_id)
);
CREATE TABLE IF NOT EXISTS iam_sp_secrets (
    id TEXT PRIMARY KEY,
    principal_id TEXT NOT NULL REFERENCES iam_principals(id) ON DELETE CASCADE,
    digest TEXT NOT NULL,
    hint TEXT NOT NULL,
    create_time REAL NOT NULL,
    expire_time REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS iam_tokens (
    digest TEXT PRIMARY KEY,
    principal_id TEXT NOT NULL REFERENCES iam_principals(id) ON DELETE CASCADE,
    expires_at REAL NOT NULL
);
"""


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _new_id() -> str:
    # SCIM ids of Databricks are 15-16 digit numbers.
    return str(secrets.randbelow(9 * 10**15) + 10**15)


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def unauthenticated(message: str) -> ApiError:
    return ApiError(401, "UNAUTHENTICATED", message)


def denied(message: str) -> ApiError:
    return ApiError(403, "PERMISSION_DENIED", message)


class ScimError(ApiError):
    """A SCIM error body (RFC 7644 3.12), as the workspace's SCIM API answers."""

    def __init__(self, status: int, detail: str, scim_type: str | None = None):
        super().__init__(status, f"SCIM_{status}", detail)
        self.scim_type = scim_type

    def body(self) -> dict[str, Any]:
        body = {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
            "detail": self.message,
            "status": str(self.status),
        }
        if self.scim_type:
            body["scimType"] = self.scim_type
        return body


@dataclass(frozen=True)
class Principal:
    """The caller of a request: a user or a service principal of this workspace."""

    id: str
    kind: str  # "user" | "service_principal"
    name: str  # userName, or the service principal's applicationId
    display_name: str

    @property
    def home(self) -> str:
        return f"/Users/{self.name}"

    @property
    def is_service_principal(self) -> bool:
        return self.kind == "service_principal"


def user_name_of(principal: Principal | None) -> str:
    """The name a caller creates and owns things under: a user's userName, a service principal's
    application id (as creator_user_name, owner and created_by show them on Databricks); the
    workspace's admin where there is no caller (objects made at startup, in-process calls)."""
    return principal.name if principal is not None else ADMIN_USER


class OAuthError(Exception):
    """An RFC 6749 token-endpoint error (``/oidc/v1/token``)."""

    def __init__(self, status: int, error: str, description: str):
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description


class EntraTrust:
    """Verifies Entra ID access tokens of one tenant against the stand-in's (or Entra's) JWKS."""

    def __init__(self, authority_url: str, tenant_id: str, ca_file: str | None = None):
        self.authority_url = authority_url.rstrip("/")
        self.tenant_id = tenant_id
        self.jwks_url = f"{self.authority_url}/{tenant_id}/discovery/v2.0/keys"
        self._context = ssl.create_default_context(cafile=ca_file) if ca_file else None
        self._keys: dict[str, Any] = {}
        self._fetched_at = 0.0
        self._lock = threading.Lock()
        self.issuers = (
            f"https://sts.windows.net/{tenant_id}/",
            f"https://login.microsoftonline.com/{tenant_id}/v2.0",
        )

    def _key(self, kid: str | None):
        import jwt

        with self._lock:
            # Refetch on an unknown kid (key rollover), at most every 10 s.
            if kid not in self._keys and time.time() - self._fetched_at > 10:
                with urllib.request.urlopen(self.jwks_url, timeout=10, context=self._context) as resp:
                    jwks = json.loads(resp.read())
                self._keys = {k.get("kid"): jwt.PyJWK(k).key for k in jwks.get("keys", [])}
                self._fetched_at = time.time()
            return self._keys.get(kid)

    def verify(self, token: str, audiences: tuple[str, ...], what: str) -> dict[str, Any]:
        """The claims of ``token``, or a 401 naming why it is refused."""
        import jwt

        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise unauthenticated(
                f"Invalid access token: the {what} is not a readable JWT ({exc})."
            ) from None
        if header.get("alg") != "RS256":
            raise unauthenticated(
                f"Invalid access token: the {what} is signed with {header.get('alg')}, not RS256."
            )
        try:
            key = self._key(header.get("kid"))
        except OSError as exc:
            raise ApiError(
                503,
                "TEMPORARILY_UNAVAILABLE",
                f"Cannot fetch the signing keys of tenant {self.tenant_id} from {self.jwks_url}: {exc}",
            ) from None
        if key is None:
            raise unauthenticated(
                f"Invalid access token: the {what} is not signed with a key of tenant {self.tenant_id} "
                f"(kid {header.get('kid')!r} is not in {self.jwks_url}). Get the token from the tenant this workspace trusts."
            )
        try:
            claims = jwt.decode(
                token, key, algorithms=["RS256"], options={"verify_aud": False, "require": ["exp", "iat"]}
            )
        except jwt.ExpiredSignatureError:
            raise unauthenticated(
                f"Invalid access token: the {what} expired at {_iso(unverified.get('exp', 0))}. Request a new token from Entra ID."
            ) from None
        except jwt.InvalidSignatureError:
            raise unauthenticated(
                f"Invalid access token: the signature of the {what} does not verify against the keys of tenant "
                f"{self.tenant_id}: it was not issued by this workspace's Entra ID tenant."
            ) from None
        except jwt.PyJWTError as exc:
            raise unauthenticated(f"Invalid access token: the {what} is not valid ({exc}).") from None
        if claims.get("iss") not in self.issuers or claims.get("tid") not in (None, self.tenant_id):
            raise unauthenticated(
                f"Invalid access token: the {what} was issued by {claims.get('iss')!r}, not by tenant {self.tenant_id}."
            )
        aud = claims.get("aud")
        if aud not in audiences:
            raise unauthenticated(
                f"Invalid access token: the {what} is for audience {aud!r}, expected {' or '.join(audiences)}. "
                f"Request it for the Azure Databricks resource (scope {DATABRICKS_RESOURCE}/.default)."
                if audiences == (DATABRICKS_RESOURCE,)
                else f"Invalid access token: the {what} is for audience {aud!r}, expected {' or '.join(audiences)}."
            )
        return claims


class Identities:
    """Users, groups and service principals of one workspace, and the tokens that name them."""

    def __init__(
        self,
        store: Store,
        *,
        workspace_name: str,
        pat: str,
        entra: EntraTrust | None = None,
        azure_resource_id: str | None = None,
        admin_user: str = ADMIN_USER,
        on_new_principal=None,
    ):
        self.store = store
        self.workspace_name = workspace_name
        self._pat_digest = _digest(pat)
        self.entra = entra
        self.azure_resource_id = azure_resource_id
        # Called with each new Principal (the workspace creates its home folder).
        self.on_new_principal = on_new_principal or (lambda principal: None)
        store.ensure_schema(SCHEMA)
        self.admin = self._ensure_user(admin_user, "Devstack Admin")
        admins = self.store.one("SELECT id FROM iam_groups WHERE display_name = 'admins'")
        if admins is None:
            group = self.create_group({"displayName": "admins"})
            admins_id = group["id"]
        else:
            admins_id = admins["id"]
        self.store.execute(
            "INSERT OR IGNORE INTO iam_members (group_id, member_id) VALUES (?, ?)",
            (admins_id, self.admin.id),
        )

    # ------------------------------------------------------------------ principals

    def _ensure_user(self, user_name: str, display_name: str) -> Principal:
        row = self.store.one("SELECT * FROM iam_principals WHERE name = ? AND kind = 'user'", (user_name,))
        if row is None:
            self.create_user({"userName": user_name, "displayName": display_name})
            row = self.store.one("SELECT * FROM iam_principals WHERE name = ?", (user_name,))
        return self._principal(row)

    @staticmethod
    def _principal(row) -> Principal:
        return Principal(row["id"], row["kind"], row["name"], row["display_name"] or row["name"])

    def principal(self, principal_id: str) -> Principal | None:
        row = self.store.one("SELECT * FROM iam_principals WHERE id = ?", (principal_id,))
        return None if row is None else self._principal(row)

    def by_application_id(self, application_id: str) -> Principal | None:
        row = self.store.one(
            "SELECT * FROM iam_principals WHERE kind = 'service_principal' AND name = ?", (application_id,)
        )
        return None if row is None else self._principal(row)

    def _insert_principal(self, kind: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        if self.store.one("SELECT 1 FROM iam_principals WHERE name = ?", (name,)):
            what = "User" if kind == "user" else "Service principal"
            raise ScimError(
                409,
                f"{what} with name {name} already exists in workspace {self.workspace_name}.",
                "uniqueness",
            )
        pid = _new_id()
        doc = {k: v for k, v in body.items() if k in ("emails", "name", "entitlements", "roles")}
        with self.store.tx() as conn:
            conn.execute(
                "INSERT INTO iam_principals (id, kind, name, display_name, active, external_id, doc) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    pid,
                    kind,
                    name,
                    body.get("displayName") or name,
                    int(body.get("active", True)),
                    body.get("externalId"),
                    dumps(doc),
                ),
            )
            for group in body.get("groups") or []:
                self._add_member(conn, group.get("value"), pid)
        principal = self.principal(pid)
        self.on_new_principal(principal)
        return self.scim_principal(pid)

    def create_user(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("userName")
        if not name:
            raise ScimError(400, "Request is missing the required field userName.", "invalidValue")
        if not body.get("emails"):
            body = {**body, "emails": [{"value": name, "type": "work", "primary": True}]}
        return self._insert_principal("user", name, body)

    def create_service_principal(self, body: dict[str, Any]) -> dict[str, Any]:
        """Add a service principal; ``applicationId`` names an Entra app, else Databricks makes one."""
        import uuid

        application_id = body.get("applicationId") or str(uuid.uuid4())
        if not re.fullmatch(r"[0-9a-fA-F-]{36}", application_id):
            raise ScimError(
                400,
                f"applicationId {application_id!r} is not a UUID (an Entra application/client id).",
                "invalidValue",
            )
        return self._insert_principal("service_principal", application_id.lower(), body)

    def scim_principal(self, pid: str, kind: str | None = None) -> dict[str, Any]:
        row = self.store.one("SELECT * FROM iam_principals WHERE id = ?", (pid,))
        if row is None or (kind and row["kind"] != kind):
            what = "User" if kind == "user" else "Service principal" if kind else "Principal"
            raise ScimError(404, f"{what} {pid} not found in workspace {self.workspace_name}.")
        doc = loads(row["doc"], {})
        groups = [
            {"value": g["id"], "display": g["display_name"], "type": "direct", "$ref": f"Groups/{g['id']}"}
            for g in self.store.all(
                "SELECT g.id, g.display_name FROM iam_members m JOIN iam_groups g ON g.id = m.group_id WHERE m.member_id = ? ORDER BY g.display_name",
                (pid,),
            )
        ]
        out: dict[str, Any] = {
            "id": row["id"],
            "displayName": row["display_name"],
            "active": bool(row["active"]),
            "groups": groups,
        }
        if row["external_id"]:
            out["externalId"] = row["external_id"]
        if row["kind"] == "user":
            out.update({"userName": row["name"], "emails": doc.get("emails", [])})
            if doc.get("name"):
                out["name"] = doc["name"]
            out["schemas"] = [
                "urn:ietf:params:scim:schemas:core:2.0:User",
                "urn:ietf:params:scim:schemas:extension:workspace:2.0:User",
            ]
        else:
            out["applicationId"] = row["name"]
            out["schemas"] = ["urn:ietf:params:scim:schemas:core:2.0:ServicePrincipal"]
        for key in ("entitlements", "roles"):
            if doc.get(key):
                out[key] = doc[key]
        return out

    def me(self, principal: Principal) -> dict[str, Any]:
        """``/Me``: the caller as a User resource (a service principal's userName is its applicationId)."""
        doc = self.scim_principal(principal.id)
        if principal.is_service_principal:
            doc = {
                **doc,
                "userName": principal.name,
                "emails": [],
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            }
            doc.pop("applicationId", None)
        return doc

    def list_principals(self, kind: str, flt: str | None) -> list[dict[str, Any]]:
        rows = self.store.all(
            "SELECT id FROM iam_principals WHERE kind = ? ORDER BY CAST(id AS INTEGER)", (kind,)
        )
        docs = [self.scim_principal(r["id"]) for r in rows]
        return filter_resources(docs, flt)

    def replace_principal(self, pid: str, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        self.scim_principal(pid, kind)
        doc = {k: v for k, v in body.items() if k in ("emails", "name", "entitlements", "roles")}
        with self.store.tx() as conn:
            conn.execute(
                "UPDATE iam_principals SET display_name = COALESCE(?, display_name), active = ?, external_id = ?, doc = ? WHERE id = ?",
                (
                    body.get("displayName"),
                    int(body.get("active", True)),
                    body.get("externalId"),
                    dumps(doc),
                    pid,
                ),
            )
            if "groups" in body:
                conn.execute("DELETE FROM iam_members WHERE member_id = ?", (pid,))
                for group in body.get("groups") or []:
                    self._add_member(conn, group.get("value"), pid)
        return self.scim_principal(pid)

    def patch_principal(self, pid: str, kind: str, operations: list[dict[str, Any]]) -> None:
        current = self.scim_principal(pid, kind)
        for op in operations:
            verb, path, value = (op.get("op") or "").lower(), op.get("path"), op.get("value")
            if verb not in ("add", "replace", "remove"):
                raise ScimError(
                    400,
                    f"Unsupported patch op {op.get('op')!r}: use add, replace or remove.",
                    "invalidSyntax",
                )
            if path is None and isinstance(value, dict):
                for key, item in value.items():
                    current = self._apply(current, verb, key, item)
            elif path:
                current = self._apply(current, verb, path, value)
            else:
                raise ScimError(400, "A patch operation needs a path or an object value.", "invalidSyntax")
        self.replace_principal(pid, kind, current)

    @staticmethod
    def _apply(doc: dict[str, Any], verb: str, path: str, value: Any) -> dict[str, Any]:
        doc = dict(doc)
        if verb == "remove":
            match = re.fullmatch(r'(\w+)\[value eq "?([^"\]]+)"?\]', path)
            if match:
                key, val = match.groups()
                doc[key] = [item for item in doc.get(key, []) if str(item.get("value")) != val]
            else:
                doc.pop(path, None)
        elif verb == "add" and isinstance(doc.get(path), list):
            existing = {str(item.get("value")) for item in doc[path]}
            doc[path] = doc[path] + [v for v in (value or []) if str(v.get("value")) not in existing]
        else:
            doc[path] = value
        return doc

    def delete_principal(self, pid: str, kind: str) -> None:
        self.scim_principal(pid, kind)
        if pid == self.admin.id:
            raise ScimError(400, "The workspace's admin user cannot be deleted.", "mutability")
        with self.store.tx() as conn:
            conn.execute("DELETE FROM iam_members WHERE member_id = ?", (pid,))
            conn.execute("DELETE FROM iam_principals WHERE id = ?", (pid,))

    # ------------------------------------------------------------------ groups

    def _add_member(self, conn, group_id: str | None, member_id: str) -> None:
        if (
            not group_id
            or conn.execute("SELECT 1 FROM iam_groups WHERE id = ?", (group_id,)).fetchone() is None
        ):
            raise ScimError(404, f"Group {group_id} not found in workspace {self.workspace_name}.")
        known = conn.execute(
            "SELECT 1 FROM iam_principals WHERE id = ? UNION SELECT 1 FROM iam_groups WHERE id = ?",
            (member_id, member_id),
        ).fetchone()
        if known is None:
            raise ScimError(
                404,
                f"Member {member_id} is not a user, service principal or group of workspace {self.workspace_name}.",
            )
        conn.execute(
            "INSERT OR IGNORE INTO iam_members (group_id, member_id) VALUES (?, ?)", (group_id, member_id)
        )

    def create_group(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("displayName")
        if not name:
            raise ScimError(400, "Request is missing the required field displayName.", "invalidValue")
        if self.store.one("SELECT 1 FROM iam_groups WHERE display_name = ?", (name,)):
            raise ScimError(
                409,
                f"Group with name {name} already exists in workspace {self.workspace_name}.",
                "uniqueness",
            )
        gid = _new_id()
        doc = {k: v for k, v in body.items() if k in ("entitlements", "roles")}
        with self.store.tx() as conn:
            conn.execute(
                "INSERT INTO iam_groups (id, display_name, external_id, doc) VALUES (?, ?, ?, ?)",
                (gid, name, body.get("externalId"), dumps(doc)),
            )
            for member in body.get("members") or []:
                self._add_member(conn, gid, member.get("value"))
        return self.scim_group(gid)

    def scim_group(self, gid: str) -> dict[str, Any]:
        row = self.store.one("SELECT * FROM iam_groups WHERE id = ?", (gid,))
        if row is None:
            raise ScimError(404, f"Group {gid} not found in workspace {self.workspace_name}.")
        members = []
        for m in self.store.all(
            "SELECT member_id FROM iam_members WHERE group_id = ? ORDER BY member_id", (gid,)
        ):
            p = self.store.one(
                "SELECT id, kind, display_name FROM iam_principals WHERE id = ?", (m["member_id"],)
            )
            g = (
                None
                if p
                else self.store.one("SELECT id, display_name FROM iam_groups WHERE id = ?", (m["member_id"],))
            )
            ref = ("Users" if p["kind"] == "user" else "ServicePrincipals") if p else "Groups"
            entry = p or g
            if entry:
                members.append(
                    {"value": entry["id"], "display": entry["display_name"], "$ref": f"{ref}/{entry['id']}"}
                )
        doc = loads(row["doc"], {})
        out = {
            "id": gid,
            "displayName": row["display_name"],
            "members": members,
            "meta": {"resourceType": "WorkspaceGroup"},
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            **{k: v for k, v in doc.items() if v},
        }
        if row["external_id"]:
            out["externalId"] = row["external_id"]
        return out

    def list_groups(self, flt: str | None) -> list[dict[str, Any]]:
        rows = self.store.all("SELECT id FROM iam_groups ORDER BY CAST(id AS INTEGER)")
        return filter_resources([self.scim_group(r["id"]) for r in rows], flt)

    def replace_group(self, gid: str, body: dict[str, Any]) -> dict[str, Any]:
        self.scim_group(gid)
        with self.store.tx() as conn:
            conn.execute(
                "UPDATE iam_groups SET display_name = COALESCE(?, display_name), external_id = ?, doc = ? WHERE id = ?",
                (
                    body.get("displayName"),
                    body.get("externalId"),
                    dumps({k: v for k, v in body.items() if k in ("entitlements", "roles")}),
                    gid,
                ),
            )
            if "members" in body:
                conn.execute("DELETE FROM iam_members WHERE group_id = ?", (gid,))
                for member in body.get("members") or []:
                    self._add_member(conn, gid, member.get("value"))
        return self.scim_group(gid)

    def patch_group(self, gid: str, operations: list[dict[str, Any]]) -> None:
        current = self.scim_group(gid)
        for op in operations:
            verb, path, value = (op.get("op") or "").lower(), op.get("path"), op.get("value")
            if path is None and isinstance(value, dict):
                for key, item in value.items():
                    current = self._apply(current, verb, key, item)
            elif path:
                current = self._apply(current, verb, path, value)
        self.replace_group(gid, current)

    def delete_group(self, gid: str) -> None:
        self.scim_group(gid)
        self.store.execute("DELETE FROM iam_groups WHERE id = ?", (gid,))

    # ------------------------------------------------------------------ OAuth secrets and tokens

    def _service_principal_row(self, sp_id: str):
        row = self.store.one(
            "SELECT * FROM iam_principals WHERE id = ? AND kind = 'service_principal'", (sp_id,)
        )
        if row is None:
            raise ApiError(
                404,
                "RESOURCE_DOES_NOT_EXIST",
                f"Service principal {sp_id} is not in workspace {self.workspace_name}: add it first with "
                "POST /api/2.0/preview/scim/v2/ServicePrincipals and use the id it answers.",
            )
        return row

    def create_secret(
        self, sp_id: str, lifetime_seconds: int | None = None, *, secret: str | None = None
    ) -> dict[str, Any]:
        """A new OAuth secret of a service principal (the value is answered once, kept as a digest).

        ``secret`` is for set-up code that must know the value in advance (the compose stack's
        static connections): the workspace makes the value up on Databricks. Giving the same value
        again answers the secret already kept instead of adding another.
        """
        self._service_principal_row(sp_id)
        if secret is None:
            secret = "dose" + secrets.token_hex(16)
        else:
            if len(secret) < 16 or any(c.isspace() for c in secret):
                raise ApiError(
                    400,
                    "INVALID_PARAMETER_VALUE",
                    f"The OAuth secret given for service principal {sp_id} must be at least 16 characters "
                    "without spaces.",
                )
            known = self.store.one(
                "SELECT * FROM iam_sp_secrets WHERE principal_id = ? AND digest = ?", (sp_id, _digest(secret))
            )
            if known is not None:
                return {**self._secret_info(known), "secret": secret}
        now = time.time()
        expire = now + (lifetime_seconds or SECRET_LIFETIME)
        sid = secrets.token_hex(8)
        self.store.execute(
            "INSERT INTO iam_sp_secrets (id, principal_id, digest, hint, create_time, expire_time) VALUES (?, ?, ?, ?, ?, ?)",
            (sid, sp_id, _digest(secret), secret[:4], now, expire),
        )
        return {
            **self._secret_info(self.store.one("SELECT * FROM iam_sp_secrets WHERE id = ?", (sid,))),
            "secret": secret,
        }

    @staticmethod
    def _secret_info(row) -> dict[str, Any]:
        return {
            "id": row["id"],
            "secret_hash": row["digest"][:16],
            "status": "ACTIVE" if row["expire_time"] > time.time() else "EXPIRED",
            "create_time": _iso(row["create_time"]),
            "update_time": _iso(row["create_time"]),
            "expire_time": _iso(row["expire_time"]),
        }

    def list_secrets(self, sp_id: str) -> list[dict[str, Any]]:
        self._service_principal_row(sp_id)
        rows = self.store.all(
            "SELECT * FROM iam_sp_secrets WHERE principal_id = ? ORDER BY create_time", (sp_id,)
        )
        return [self._secret_info(r) for r in rows]

    def delete_secret(self, sp_id: str, secret_id: str) -> None:
        self._service_principal_row(sp_id)
        cur = self.store.execute(
            "DELETE FROM iam_sp_secrets WHERE id = ? AND principal_id = ?", (secret_id, sp_id)
        )
        if cur.rowcount == 0:
            raise ApiError(
                404,
                "RESOURCE_DOES_NOT_EXIST",
                f"Secret {secret_id} of service principal {sp_id} does not exist.",
            )

    def client_credentials(
        self, client_id: str | None, client_secret: str | None, scope: str | None
    ) -> dict[str, Any]:
        """``/oidc/v1/token`` for a service principal of this workspace (RFC 6749 client credentials)."""
        if not client_id or not client_secret:
            raise OAuthError(
                401,
                "invalid_client",
                "Client authentication failed: send the client id and OAuth secret (HTTP basic auth or form fields).",
            )
        principal = self.by_application_id(client_id.lower())
        if principal is None:
            raise OAuthError(
                401,
                "invalid_client",
                f"Client authentication failed: no service principal with application id {client_id} is in workspace "
                f"{self.workspace_name}. Add it (SCIM ServicePrincipals) and create an OAuth secret for it.",
            )
        given = _digest(client_secret)
        rows = self.store.all(
            "SELECT digest, expire_time FROM iam_sp_secrets WHERE principal_id = ?", (principal.id,)
        )
        valid = [r for r in rows if hmac.compare_digest(given, r["digest"])]
        if not valid:
            raise OAuthError(
                401,
                "invalid_client",
                f"Client authentication failed: the client secret is not an OAuth secret of service principal {client_id}.",
            )
        if all(r["expire_time"] <= time.time() for r in valid):
            raise OAuthError(
                401,
                "invalid_client",
                f"Client authentication failed: the OAuth secret of {client_id} has expired.",
            )
        scopes = (scope or "all-apis").split()
        if not set(scopes) <= {"all-apis", "offline_access", "sql", "openid", "profile", "email"}:
            raise OAuthError(400, "invalid_scope", f"Unsupported scope {scope!r}: request 'all-apis'.")
        token = self.issue_token(principal, OAUTH_TOKEN_TTL)
        return {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": OAUTH_TOKEN_TTL,
            "scope": " ".join(scopes),
        }

    def issue_token(self, principal: Principal, ttl_seconds: int) -> str:
        """A bearer token for ``principal`` valid ``ttl_seconds`` (notebook runs' short-lived credentials)."""
        token = (
            "dapi" + secrets.token_hex(20)
            if not principal.is_service_principal
            else "doat" + secrets.token_hex(24)
        )
        now = time.time()
        with self.store.tx() as conn:
            conn.execute("DELETE FROM iam_tokens WHERE expires_at < ?", (now - 86400,))
            conn.execute(
                "INSERT INTO iam_tokens (digest, principal_id, expires_at) VALUES (?, ?, ?)",
                (_digest(token), principal.id, now + ttl_seconds),
            )
        return token

    # ------------------------------------------------------------------ authentication

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        """The caller named by a request's headers (lower-cased names), or a 401/403 naming the cause."""
        header = headers.get("authorization", "")
        if not header:
            raise unauthenticated("Missing Authorization header: send 'Authorization: Bearer <token>'.")
        scheme, _, credential = header.partition(" ")
        token = credential.strip()
        if scheme.lower() == "basic":
            import base64
            import binascii

            try:
                token = base64.b64decode(credential).decode().partition(":")[2]
            except (binascii.Error, UnicodeDecodeError):
                token = ""
        elif scheme.lower() != "bearer":
            raise unauthenticated(
                f"Unsupported authorization scheme {scheme!r}: send 'Authorization: Bearer <token>'."
            )
        if hmac.compare_digest(_digest(token), self._pat_digest):
            return self.admin
        if token.count(".") == 2 and token.startswith("eyJ"):
            return self._entra_caller(token, headers)
        row = self.store.one(
            "SELECT principal_id, expires_at FROM iam_tokens WHERE digest = ?", (_digest(token),)
        )
        if row is None:
            # Databricks' answer to an unknown token.
            raise denied("Invalid access token.")
        if row["expires_at"] <= time.time():
            raise unauthenticated(
                f"Invalid access token: the token expired at {_iso(row['expires_at'])}. Request a new one."
            )
        principal = self.principal(row["principal_id"])
        if principal is None:
            raise denied("Invalid access token: its principal was removed from the workspace.")
        return principal

    def _entra_caller(self, token: str, headers: Mapping[str, str]) -> Principal:
        if self.entra is None:
            raise unauthenticated(
                "Invalid access token: this workspace trusts no Entra ID tenant (start it with --entra-url and "
                "--entra-tenant-id), so it cannot accept an Entra ID token."
            )
        claims = self.entra.verify(token, (DATABRICKS_RESOURCE,), "token")
        app_id = (claims.get("appid") or claims.get("azp") or "").lower()
        principal = self.by_application_id(app_id)
        management = headers.get("x-databricks-azure-sp-management-token")
        if management or headers.get("x-databricks-azure-workspace-resource-id"):
            self._check_management(
                management, headers.get("x-databricks-azure-workspace-resource-id"), app_id
            )
            if principal is None:
                # Azure adds a Contributor of the workspace resource on its first sign-in.
                self.create_service_principal({"applicationId": app_id, "displayName": app_id})
                principal = self.by_application_id(app_id)
        if principal is None:
            raise denied(
                f"User not authorized: service principal {app_id} (tenant {claims.get('tid')}) has not been added to "
                f"workspace {self.workspace_name}. Add it with POST /api/2.0/preview/scim/v2/ServicePrincipals "
                '{"applicationId": "' + app_id + '"}, or send an Azure management token of a Contributor '
                "(X-Databricks-Azure-SP-Management-Token and X-Databricks-Azure-Workspace-Resource-Id)."
            )
        return principal

    def _check_management(self, token: str | None, resource_id: str | None, app_id: str) -> None:
        if not token or not resource_id:
            raise unauthenticated(
                "Invalid access token: X-Databricks-Azure-SP-Management-Token and X-Databricks-Azure-Workspace-Resource-Id "
                "must come together."
            )
        claims = self.entra.verify(token, MANAGEMENT_AUDIENCES, "Azure management token")
        if (claims.get("appid") or claims.get("azp") or "").lower() != app_id:
            raise unauthenticated(
                "Invalid access token: the Azure management token belongs to another identity than the access token."
            )
        if self.azure_resource_id and resource_id.lower() != self.azure_resource_id.lower():
            raise denied(
                f"User not authorized: X-Databricks-Azure-Workspace-Resource-Id {resource_id!r} is not this workspace "
                f"({self.azure_resource_id})."
            )


# ---------------------------------------------------------------------- SCIM filters

_FILTER_TERM = re.compile(r'\s*([\w.]+)\s+(eq|ne|co|sw|ew)\s+("(?:[^"\\]|\\.)*"|\S+)\s*', re.IGNORECASE)


def _attr(doc: dict[str, Any], path: str) -> list[str]:
    value: Any = doc
    for part in path.split("."):
        if isinstance(value, list):
            value = [v.get(part) if isinstance(v, dict) else None for v in value]
        elif isinstance(value, dict):
            # SCIM attribute names are case-insensitive.
            value = next((v for k, v in value.items() if k.lower() == part.lower()), None)
        else:
            return []
    values = value if isinstance(value, list) else [value]
    return [str(v).lower() if not isinstance(v, bool) else str(v).lower() for v in values if v is not None]


def filter_resources(docs: list[dict[str, Any]], flt: str | None) -> list[dict[str, Any]]:
    """Apply a SCIM filter of simple ``attr op value`` terms joined by ``and`` / ``or``."""
    if not flt or not flt.strip():
        return docs
    clauses: list[list[tuple[str, str, str]]] = []
    for disjunct in re.split(r"\s+or\s+", flt.strip(), flags=re.IGNORECASE):
        terms = []
        for part in re.split(r"\s+and\s+", disjunct, flags=re.IGNORECASE):
            match = _FILTER_TERM.fullmatch(part)
            if not match:
                raise ScimError(
                    400,
                    f"Invalid filter {flt!r}: expected terms like 'displayName eq \"name\"' (operators eq, ne, co, sw) joined by and/or.",
                    "invalidFilter",
                )
            attr, op, value = match.groups()
            terms.append((attr, op.lower(), value.strip('"').lower()))
        clauses.append(terms)

    def holds(doc, attr, op, value) -> bool:
        values = _attr(doc, attr)
        if op == "eq":
            return value in values
        if op == "ne":
            return value not in values
        if op == "co":
            return any(value in v for v in values)
        if op == "sw":
            return any(v.startswith(value) for v in values)
        return any(v.endswith(value) for v in values)

    return [doc for doc in docs if any(all(holds(doc, *t) for t in terms) for terms in clauses)]
