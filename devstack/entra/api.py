"""The HTTP face of the Entra ID stand-in: token endpoints, discovery, JWKS, managed identity.

Paths as on login.microsoftonline.com (``/{tenant}/oauth2/token``, ``/{tenant}/oauth2/v2.0/token``,
``/{tenant}/v2.0/.well-known/openid-configuration``, ``/{tenant}/discovery/v2.0/keys``), plus
``/msi/token``, the App Service / Container Apps managed-identity endpoint (``IDENTITY_ENDPOINT``).
One port answers TLS and plain HTTP (see devstack.tls).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import ssl
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from devstack import tls
from devstack.entra.backend import Directory, EntraError

log = logging.getLogger("devstack.entra")

_TOKEN = re.compile(r"^/(?P<tenant>[^/]+)/oauth2(?P<v2>/v2\.0)?/token/?$")
_OPENID = re.compile(r"^/(?P<tenant>[^/]+)(?P<v2>/v2\.0)?/\.well-known/openid-configuration/?$")
_KEYS = re.compile(r"^/(?P<tenant>[^/]+)/discovery(?P<v2>/v2\.0)?/keys/?$")
MSI_PATH = "/msi/token"
# The Instance Metadata Service's instance document, which the Databricks provider reads before
# using a managed identity (AZURE_METADATA_SERVICE_INSTANCE_URL; on Azure at 169.254.169.254).
IMDS_INSTANCE_PATH = "/metadata/instance"


class EntraHTTPServer(tls.OptionalTLSServerMixin, ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], directory: Directory, ssl_context: ssl.SSLContext | None):
        self.directory = directory
        self.ssl_context = ssl_context
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: EntraHTTPServer
    server_version = "devstack-entra"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        log.debug("%s - %s", self.address_string(), format % args)

    @property
    def _base_url(self) -> str:
        scheme = "https" if isinstance(self.connection, ssl.SSLSocket) else "http"
        host = self.headers.get("Host") or "{}:{}".format(*self.server.server_address[:2])
        return f"{scheme}://{host}"

    def do_GET(self) -> None:  # noqa: N802
        split = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        directory = self.server.directory
        try:
            if split.path == "/health":
                return self._json(200, {"status": "ok", "tenant_id": directory.tenant_id})
            if split.path == IMDS_INSTANCE_PATH:
                return self._instance_metadata()
            if split.path == MSI_PATH:
                resource = directory.resource_of(resource=query.get("resource"))
                return self._json(
                    200,
                    directory.managed_identity_token(
                        self.headers.get("X-IDENTITY-HEADER"), resource, query.get("client_id")
                    ),
                )
            if found := _OPENID.match(split.path):
                return self._json(
                    200,
                    directory.openid_configuration(self._base_url, found["tenant"], v2=bool(found["v2"])),
                )
            if _KEYS.match(split.path):
                return self._json(200, directory.jwks())
        except EntraError as exc:
            return self._json(exc.status, exc.body())
        self._json(404, {"error": "not_found", "error_description": f"No endpoint at GET {split.path}"})

    def do_POST(self) -> None:  # noqa: N802
        split = urlsplit(self.path)
        found = _TOKEN.match(split.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not found:
            return self._json(
                404, {"error": "not_found", "error_description": f"No endpoint at POST {split.path}"}
            )
        form = {k: v[-1] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        basic_id, basic_secret = self._basic_auth()
        client_id, client_secret = client_id or basic_id, client_secret or basic_secret
        v2 = bool(found["v2"])
        directory = self.server.directory
        try:
            grant = form.get("grant_type")
            if grant != "client_credentials":
                raise EntraError(
                    400,
                    "unsupported_grant_type",
                    70003,
                    f"The app requested an unsupported grant type '{grant}': this stand-in issues "
                    "client_credentials tokens only.",
                )
            resource = (
                directory.resource_of(scope=form.get("scope", ""))
                if v2
                else directory.resource_of(resource=form.get("resource"))
            )
            answer = directory.client_credentials(found["tenant"], client_id, client_secret, resource, v2=v2)
        except EntraError as exc:
            log.info("token refused for client %s: AADSTS%s %s", client_id, exc.code, exc.error)
            return self._json(exc.status, exc.body())
        self._json(200, answer)

    def _instance_metadata(self) -> None:
        if self.headers.get("Metadata", "").lower() != "true":
            return self._json(
                400,
                {
                    "error": "Bad request. Required metadata header not specified",
                    "newest-versions": ["2021-02-01"],
                },
            )
        self._json(
            200,
            {
                "compute": {
                    "azEnvironment": "AzurePublicCloud",
                    "location": "westeurope",
                    "name": "devstack",
                    "osType": "Linux",
                    "subscriptionId": "00000000-0000-0000-0000-000000000000",
                    "resourceGroupName": "devstack",
                },
                "network": {"interface": []},
            },
        )

    def _basic_auth(self) -> tuple[str | None, str | None]:
        scheme, _, value = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "basic":
            return None, None
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None, None
        return user, password

    def _json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store, no-cache")
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass


def serve(host: str, port: int, directory: Directory, ssl_context: ssl.SSLContext | None) -> EntraHTTPServer:
    return EntraHTTPServer((host, port), directory, ssl_context)
