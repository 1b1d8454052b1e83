"""The HTTP front of an emulated workspace: auth, JSON in/out, Databricks-shaped errors, faults.

The routes come from devstack.workspace.routes, through the assembled :class:`Workspace`.
"""

from __future__ import annotations

import json
import logging
import random
import ssl
import time
from collections import deque
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from devstack import tls
from devstack.workspace.app import Workspace
from devstack.workspace.context import WorkspaceContext
from devstack.workspace.http import ApiError, Request, Response, Router
from devstack.workspace.iam import api as iam_api
from devstack.workspace.multipart import is_form_data, parse_form_data

log = logging.getLogger("devstack.workspace")

# Calls the notebook drivers make back to their workspace; never subject to fault injection.
INTERNAL_PREFIX = "/api/2.0/devstack/"


class WorkspaceHTTPServer(tls.OptionalTLSServerMixin, ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, ctx: WorkspaceContext, router: Router):
        self.ctx = ctx
        self.router = router
        self.fault_random = random.Random()
        # Server-side handling time of recent requests, for the stats endpoint and benchmarks.
        self.timings: deque[tuple[str, float]] = deque(maxlen=20_000)
        ctx.services["http_timings"] = self.timings
        self.ssl_context = tls.server_context(ctx.tls_cert, ctx.tls_key) if ctx.tls_cert else None
        super().__init__((ctx.host, ctx.port), _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without TCP_NODELAY, Nagle's algorithm and the
    # client's delayed ACK add ~40 ms to every keep-alive response.
    disable_nagle_algorithm = True
    server: WorkspaceHTTPServer
    server_version = "devstack-workspace"

    # One method for every verb: the router decides what exists.
    def do_GET(self) -> None:  # noqa: N802
        self._dispatch()

    do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = do_GET  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        log.debug("%s - %s", self.address_string(), format % args)

    def _dispatch(self) -> None:
        started = time.monotonic()
        split = urlsplit(self.path)
        try:
            raw = self._read_body()
            principal = None
            if split.path.startswith("/api/"):
                principal = self._authenticate()
                self._maybe_inject_fault(split.path)
            handler, path_params = self.server.router.match(self.command, split.path)
            content_type = self.headers.get("Content-Type")
            if getattr(handler, "raw_body", False):
                body = {}
            elif is_form_data(content_type):
                body = self._parse_form(raw, content_type)
            else:
                body = self._parse_json(raw)
            request = Request(
                method=self.command,
                path=split.path,
                query=parse_qs(split.query, keep_blank_values=True),
                body=body,
                headers={k.lower(): v for k, v in self.headers.items()},
                path_params=path_params,
                raw_body=raw,
                principal=principal,
                scheme="https" if isinstance(self.connection, ssl.SSLSocket) else "http",
            )
            result = handler(request)
        except ApiError as exc:
            self._send_json(exc.status, exc.body(), exc.headers)
        except Exception as exc:  # a bug in the emulator: answer like Databricks' 500
            log.exception("internal error on %s %s", self.command, self.path)
            self._send_json(500, {"error_code": "INTERNAL_ERROR", "message": f"{type(exc).__name__}: {exc}"})
        else:
            if isinstance(result, Response):
                self._send(result.status, result.body, result.content_type, result.headers)
            else:
                self._send_json(200, {} if result is None else result)
        took = (time.monotonic() - started) * 1000
        self.server.timings.append((split.path, took))
        log.debug("%s %s took %.1f ms", self.command, split.path, took)

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked()  # requests streams uploads of unknown length this way
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes:
        chunks = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline().strip():  # trailers, then the blank line
                    pass
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    @staticmethod
    def _parse_json(raw: bytes) -> dict[str, Any]:
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ApiError(
                400, "MALFORMED_REQUEST", f"Invalid JSON given in the body of the request: {exc}"
            ) from None
        if not isinstance(body, dict):
            raise ApiError(
                400, "MALFORMED_REQUEST", "Invalid JSON given in the body of the request: expected an object"
            )
        return body

    @staticmethod
    def _parse_form(raw: bytes, content_type: str) -> dict[str, Any]:
        # databricks-sdk's workspace.upload posts a multipart form instead of JSON.
        try:
            return parse_form_data(raw, content_type)
        except ValueError as exc:
            raise ApiError(400, "MALFORMED_REQUEST", f"Invalid multipart/form-data body: {exc}") from None

    def _authenticate(self):
        """The caller (devstack.workspace.iam): PAT, Entra ID token or OAuth token; 401/403 otherwise."""
        return iam_api.authenticate(self.server.ctx, {k.lower(): v for k, v in self.headers.items()})

    def _maybe_inject_fault(self, path: str) -> None:
        rate = self.server.ctx.fault_rate
        if rate <= 0 or path.startswith(INTERNAL_PREFIX):
            return
        if self.server.fault_random.random() < rate:
            if self.server.fault_random.random() < 0.5:
                raise ApiError(
                    429,
                    "TOO_MANY_REQUESTS",
                    "Too many requests (injected by --fault-rate).",
                    {"Retry-After": "1"},
                )
            raise ApiError(
                503,
                "TEMPORARILY_UNAVAILABLE",
                "Service unavailable (injected by --fault-rate).",
                {"Retry-After": "1"},
            )

    def _send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(body).encode(), "application/json", headers)

    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        try:
            self.send_response(
                status, HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else None
            )
            self.send_header("Content-Type", content_type)
            # Databricks names the workspace in every answer; MLflow's UC client records it as the
            # source run's workspace (run_tracking_server_id).
            self.send_header("X-Databricks-Org-Id", self.server.ctx.workspace_id)
            if "Content-Length" not in (headers or {}):  # a HEAD answer may state the file's size
                self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass


def serve(workspace: Workspace) -> WorkspaceHTTPServer:
    """Bind the server for an assembled workspace (not yet serving)."""
    ctx = workspace.ctx
    server = WorkspaceHTTPServer(ctx, workspace.router)
    # Port 0 asks the kernel for a free port: report the real one.
    ctx.port = server.server_address[1]
    return server
