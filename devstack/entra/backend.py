"""State and rules of the Entra ID stand-in: one tenant, its applications, managed identities, keys.

Plain Python, no HTTP: ``devstack up`` and the tests create service principals in-process with
:class:`Directory`; the stand-in's server reads the same files (reloaded when they change).
Secrets are kept as SHA-256 digests only; whoever creates one is handed the value once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The application id of AzureDatabricks, the resource of every Azure Databricks token
# (learn.microsoft.com, "Get Microsoft Entra ID tokens for service principals").
DATABRICKS_RESOURCE = "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d"
MANAGEMENT_RESOURCE = "https://management.core.windows.net/"
# Resources this tenant issues tokens for (aliases of Azure management included).
RESOURCES = {
    DATABRICKS_RESOURCE: DATABRICKS_RESOURCE,
    f"api://{DATABRICKS_RESOURCE}": DATABRICKS_RESOURCE,
    MANAGEMENT_RESOURCE: MANAGEMENT_RESOURCE,
    MANAGEMENT_RESOURCE.rstrip("/"): MANAGEMENT_RESOURCE,
    "https://management.azure.com/": "https://management.azure.com/",
    "https://management.azure.com": "https://management.azure.com/",
}
TOKEN_LIFETIME = 3600
DIRECTORY_FILE = "directory.json"
KEY_FILE = "signing-key.pem"


def v1_issuer(tenant_id: str) -> str:
    return f"https://sts.windows.net/{tenant_id}/"


def v2_issuer(tenant_id: str) -> str:
    return f"https://login.microsoftonline.com/{tenant_id}/v2.0"


class EntraError(Exception):
    """An error as Entra's token endpoint answers it: OAuth ``error`` plus an AADSTS code."""

    def __init__(self, status: int, error: str, code: int, description: str):
        super().__init__(f"AADSTS{code}: {description}")
        self.status = status
        self.error = error
        self.code = code
        self.description = description

    def body(self) -> dict[str, Any]:
        trace = str(uuid.uuid4())
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        return {
            "error": self.error,
            "error_description": f"AADSTS{self.code}: {self.description} Trace ID: {trace} "
            f"Correlation ID: {trace} Timestamp: {stamp}",
            "error_codes": [self.code],
            "timestamp": stamp,
            "trace_id": trace,
            "correlation_id": trace,
            "error_uri": f"https://login.microsoftonline.com/error?code={self.code}",
        }


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass
class Credentials:
    """What a newly created identity's owner needs; the secret is not kept anywhere else."""

    client_id: str
    secret: str
    tenant_id: str
    display_name: str
    object_id: str

    def as_dict(self) -> dict[str, str]:
        return {
            "client_id": self.client_id,
            "client_secret": self.secret,
            "tenant_id": self.tenant_id,
            "display_name": self.display_name,
            "object_id": self.object_id,
        }


class Directory:
    """One Entra tenant kept in ``data_dir``: applications (service principals), managed identities."""

    def __init__(self, data_dir: Path, tenant_id: str | None = None):
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._file = data_dir / DIRECTORY_FILE
        self._mtime = 0.0
        self._data: dict[str, Any] = {}
        with self._lock:
            self._load()
            if not self._data:
                self._data = {
                    "tenant_id": tenant_id or str(uuid.uuid4()),
                    "applications": {},
                    "managed_identities": {},
                }
                self._save()
            elif tenant_id and tenant_id != self._data["tenant_id"]:
                raise ValueError(
                    f"{self._file} holds tenant {self._data['tenant_id']}, not {tenant_id}: "
                    "use another data dir for another tenant."
                )
        self._key, self.kid = self._signing_key()

    # ------------------------------------------------------------------ persistence

    def _load(self) -> None:
        try:
            mtime = self._file.stat().st_mtime_ns
        except FileNotFoundError:
            return
        if mtime != self._mtime:
            self._data = json.loads(self._file.read_text())
            self._mtime = mtime

    def _save(self) -> None:
        tmp = self._file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._data, indent=2))
        tmp.chmod(0o600)
        tmp.replace(self._file)
        self._mtime = self._file.stat().st_mtime_ns

    def _signing_key(self):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        path = self.data_dir / KEY_FILE
        if path.exists():
            key = serialization.load_pem_private_key(path.read_bytes(), None)
        else:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            path.write_bytes(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
            path.chmod(0o600)
        public_der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return key, hashlib.sha256(public_der).hexdigest()[:27]

    # ------------------------------------------------------------------ identities

    @property
    def tenant_id(self) -> str:
        return self._data["tenant_id"]

    def create_service_principal(self, display_name: str) -> Credentials:
        """A new application with its service principal and one client secret."""
        secret = self._new_secret()
        client_id, object_id = str(uuid.uuid4()), str(uuid.uuid4())
        with self._lock:
            self._load()
            self._data["applications"][client_id] = {
                "display_name": display_name,
                "object_id": object_id,
                "secret_digests": [_digest(secret)],
            }
            self._save()
        return Credentials(client_id, secret, self.tenant_id, display_name, object_id)

    def add_service_principal(self, client_id: str, secret: str, display_name: str) -> Credentials:
        """The application ``client_id`` with ``secret`` among its client secrets, created if missing.

        Entra assigns both values itself; set-up code that must know them in advance (the compose
        stack's static connections) calls this in-process. The HTTP face offers no such thing.
        Repeating the call changes nothing.
        """
        try:
            client_id = str(uuid.UUID(client_id))
        except ValueError:
            raise ValueError(
                f"client id {client_id!r} is not a GUID: Entra application (client) ids are GUIDs."
            ) from None
        if len(secret) < 16 or any(c.isspace() for c in secret):
            raise ValueError(
                f"the client secret of {client_id} must be at least 16 characters without spaces."
            )
        with self._lock:
            self._load()
            app = self._data["applications"].setdefault(
                client_id,
                {"display_name": display_name, "object_id": str(uuid.uuid4()), "secret_digests": []},
            )
            if _digest(secret) not in app["secret_digests"]:
                app["secret_digests"].append(_digest(secret))
            self._save()
        return Credentials(client_id, secret, self.tenant_id, app["display_name"], app["object_id"])

    def create_managed_identity(self, display_name: str) -> Credentials:
        """A user-assigned managed identity; its ``secret`` is the IDENTITY_HEADER of its host."""
        header = secrets.token_hex(16)
        client_id, object_id = str(uuid.uuid4()), str(uuid.uuid4())
        with self._lock:
            self._load()
            self._data["managed_identities"][client_id] = {
                "display_name": display_name,
                "object_id": object_id,
                "header_digest": _digest(header),
            }
            self._save()
        return Credentials(client_id, header, self.tenant_id, display_name, object_id)

    def application(self, client_id: str) -> dict[str, Any] | None:
        with self._lock:
            self._load()
            return self._data["applications"].get(client_id)

    @staticmethod
    def _new_secret() -> str:
        # Entra client secrets are 40 characters with a '~' after a 3-character prefix.
        return secrets.token_urlsafe(3)[:3] + "8Q~" + secrets.token_urlsafe(30)[:34]

    # ------------------------------------------------------------------ tokens

    def _check_tenant(self, tenant: str) -> None:
        if tenant.lower() not in (self.tenant_id.lower(), "organizations", "common"):
            raise EntraError(
                400,
                "invalid_request",
                90002,
                f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are "
                "signing into the correct cloud.",
            )

    @staticmethod
    def resource_of(resource: str | None = None, scope: str | None = None) -> str:
        """The resource a v1 ``resource`` or v2 ``scope`` (``<resource>/.default``) names."""
        if scope is not None:
            first = (scope.split() or [""])[0]
            if not first.endswith("/.default"):
                raise EntraError(
                    400,
                    "invalid_scope",
                    1002012,
                    f"The provided value for scope {first!r} is not valid. Client credential flows must have "
                    "a scope value with /.default suffixed to the resource identifier (application ID URI).",
                )
            resource = first[: -len("/.default")]
        if not resource:
            raise EntraError(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'resource' (v1) or 'scope' (v2).",
            )
        canonical = RESOURCES.get(resource) or RESOURCES.get(resource + "/")
        if canonical is None:
            raise EntraError(
                400,
                "invalid_resource",
                500011,
                f"The resource principal named {resource} was not found in the tenant. This can happen if "
                "the application has not been installed by the administrator of the tenant; this stand-in "
                f"knows Azure Databricks ({DATABRICKS_RESOURCE}) and Azure management ({MANAGEMENT_RESOURCE}).",
            )
        return canonical

    def client_credentials(
        self, tenant: str, client_id: str | None, client_secret: str | None, resource: str, *, v2: bool
    ) -> dict[str, Any]:
        """The token answer of ``grant_type=client_credentials`` (checks tenant, app, secret)."""
        self._check_tenant(tenant)
        if not client_id:
            raise EntraError(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'client_id'.",
            )
        app = self.application(client_id)
        if app is None:
            raise EntraError(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{self.tenant_id}'. This can happen if the application has not been installed by the "
                "administrator of the tenant. You may have sent your authentication request to the wrong tenant.",
            )
        if not client_secret:
            raise EntraError(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            )
        given = _digest(client_secret)
        if not any(hmac.compare_digest(given, known) for known in app["secret_digests"]):
            raise EntraError(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client "
                f"secret value, not the client secret ID, for a secret added to app '{client_id}'.",
            )
        token, exp = self.issue(client_id, app["object_id"], resource)
        answer: dict[str, Any] = {"token_type": "Bearer", "expires_in": TOKEN_LIFETIME, "access_token": token}
        if v2:
            answer["ext_expires_in"] = TOKEN_LIFETIME
        else:
            answer.update(
                {
                    "ext_expires_in": str(TOKEN_LIFETIME),
                    "expires_in": str(TOKEN_LIFETIME),
                    "expires_on": str(exp),
                    "not_before": str(exp - TOKEN_LIFETIME),
                    "resource": resource,
                }
            )
        return answer

    def managed_identity_token(
        self, header: str | None, resource: str, client_id: str | None
    ) -> dict[str, Any]:
        """App Service style answer (api-version 2019-08-01) for the identity owning ``header``."""
        if not header:
            raise EntraError(
                400, "invalid_request", 0, "The X-IDENTITY-HEADER header is missing: set IDENTITY_HEADER."
            )
        given = _digest(header)
        with self._lock:
            self._load()
            matches = [
                (cid, mi)
                for cid, mi in self._data["managed_identities"].items()
                if hmac.compare_digest(given, mi["header_digest"])
            ]
        if not matches:
            raise EntraError(
                401,
                "invalid_request",
                0,
                "The X-IDENTITY-HEADER value is not the one of any managed identity here.",
            )
        mi_client_id, identity = matches[0]
        if client_id and client_id != mi_client_id:
            raise EntraError(
                400,
                "invalid_request",
                0,
                f"No user-assigned managed identity with client_id '{client_id}' is assigned to this host.",
            )
        token, exp = self.issue(mi_client_id, identity["object_id"], resource)
        return {
            "access_token": token,
            "expires_on": str(exp),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": mi_client_id,
        }

    def issue(
        self,
        client_id: str,
        object_id: str,
        resource: str,
        *,
        lifetime: int = TOKEN_LIFETIME,
        now: float | None = None,
    ) -> tuple[str, int]:
        """A v1 access token: Azure Databricks and Azure management accept v1 tokens
        (their manifests leave accessTokenAcceptedVersion unset, so the v2 endpoint issues v1 too)."""
        import jwt

        iat = int(now if now is not None else time.time())
        claims = {
            "aud": resource,
            "iss": v1_issuer(self.tenant_id),
            "iat": iat,
            "nbf": iat,
            "exp": iat + lifetime,
            "aio": secrets.token_urlsafe(16),
            "appid": client_id,
            "appidacr": "1",
            "idp": v1_issuer(self.tenant_id),
            "oid": object_id,
            "sub": object_id,
            "tid": self.tenant_id,
            "uti": secrets.token_urlsafe(16),
            "ver": "1.0",
        }
        token = jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid, "x5t": self.kid})
        return token, iat + lifetime

    def jwks(self) -> dict[str, Any]:
        from jwt.algorithms import RSAAlgorithm

        jwk = json.loads(RSAAlgorithm.to_jwk(self._key.public_key()))
        jwk.update({"kid": self.kid, "x5t": self.kid, "use": "sig", "alg": "RS256"})
        return {"keys": [jwk]}

    def openid_configuration(self, base_url: str, tenant: str, *, v2: bool) -> dict[str, Any]:
        self._check_tenant(tenant)
        tid = self.tenant_id
        suffix = "/v2.0" if v2 else ""
        return {
            "token_endpoint": f"{base_url}/{tid}/oauth2{suffix}/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{base_url}/{tid}/discovery{suffix}/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": v2_issuer(tid) if v2 else v1_issuer(tid),
            "authorization_endpoint": f"{base_url}/{tid}/oauth2{suffix}/authorize",
            "tenant_region_scope": "EU",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "tid", "oid", "appid", "azp"],
        }
