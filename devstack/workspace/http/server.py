"""The HTTP front of an emulated workspace, on Werkzeug: a WSGI application and its threaded server.

A call goes: TLS or plain HTTP on one port (devstack.tls) -> Werkzeug's request parsing
(chunked bodies, query strings, multipart forms) -> sign-in for /api/ paths (:mod:`.auth`) ->
fault injection (:mod:`.faults`) -> the route table's handler -> JSON, or the handler's
:class:`Response` (whose body may also be an iterable of bytes: it is then streamed, chunked).
Every error, including those of the framework itself (unknown path, wrong method, unparsable
body, a malformed request line), is answered in Databricks' shape ``{"error_code", "message"}``.

Why Werkzeug's threaded server: benchmarks/workspace_load.py measured it against uvicorn +
Starlette, with the same runs/get tail within the noise of a shared machine
(benchmarks/README.md); being a socketserver it keeps the one-port TLS of devstack.tls, and
handlers stay synchronous in their connection's thread. Its cost: every answer closes its
connection (no keep-alive), so a client opens one connection per call, which puts the median
about 1.5 ms above the former http.server front's under the same load.
"""

from __future__ import annotations

import io
import json
import logging
import ssl
import time
from collections import deque
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from werkzeug.exceptions import HTTPException
from werkzeug.formparser import FormDataParser
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler
from werkzeug.wrappers import Request as WsgiRequest
from werkzeug.wrappers import Response as WsgiResponse

from devstack import tls
from devstack.workspace.http.auth import Authenticator
from devstack.workspace.http.errors import ApiError
from devstack.workspace.http.faults import FaultInjector
from devstack.workspace.http.request import Request, Response
from devstack.workspace.http.router import Router

if TYPE_CHECKING:
    from devstack.workspace.app import Workspace

log = logging.getLogger("devstack.workspace")

# Error codes of errors the framework raises before a handler runs, by HTTP status.
_FRAMEWORK_ERROR_CODES = {
    400: "MALFORMED_REQUEST",
    404: "ENDPOINT_NOT_FOUND",
    405: "BAD_REQUEST",
    413: "BAD_REQUEST",
    414: "BAD_REQUEST",
    431: "BAD_REQUEST",
}


def _framework_error(status: int, message: str) -> dict[str, str]:
    code = _FRAMEWORK_ERROR_CODES.get(status, "BAD_REQUEST" if status < 500 else "INTERNAL_ERROR")
    return {"error_code": code, "message": message}


class WorkspaceApp:
    """The WSGI application: one workspace's routes behind sign-in, fault injection and Databricks' errors.

    :param router: the route table (devstack.workspace.routes).
    :param authenticate: ``(path, headers) -> principal``; raises ApiError 401/403.
    :param faults: answers a share of API calls 429/503 (``--fault-rate``).
    :param org_id: the workspace id, sent as ``X-Databricks-Org-Id`` on every answer.
    :param timings: receives ``(path, milliseconds)`` of every call (the stats endpoint reads them).
    """

    def __init__(
        self,
        router: Router,
        *,
        authenticate: Callable[[str, dict[str, str]], Any],
        faults: FaultInjector,
        org_id: str,
        timings: deque[tuple[str, float]],
    ):
        self.router = router
        self.authenticate = authenticate
        self.faults = faults
        self.org_id = org_id
        self.timings = timings

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        started = time.monotonic()
        wsgi_request = WsgiRequest(environ)
        # The path as sent, still percent-encoded: handlers of file paths decode it once themselves.
        path = urlsplit(environ.get("REQUEST_URI") or wsgi_request.path).path
        try:
            result = self._dispatch(wsgi_request, path)
        except ApiError as exc:
            response = self._json(exc.status, exc.body(), exc.headers)
        except HTTPException as exc:  # raised inside Werkzeug (a body it cannot read, for instance)
            response = self._json(exc.code or 400, _framework_error(exc.code or 400, exc.description or ""))
        except Exception as exc:  # a bug in the emulator: answer like Databricks' 500
            log.exception("internal error on %s %s", wsgi_request.method, path)
            response = self._json(
                500, {"error_code": "INTERNAL_ERROR", "message": f"{type(exc).__name__}: {exc}"}
            )
        else:
            if isinstance(result, Response):
                response = WsgiResponse(result.body, result.status, content_type=result.content_type)
                response.headers.update(result.headers)
            else:
                response = self._json(200, {} if result is None else result)
        response.headers["X-Databricks-Org-Id"] = self.org_id
        took = (time.monotonic() - started) * 1000
        self.timings.append((path, took))
        log.debug("%s %s took %.1f ms", wsgi_request.method, path, took)
        return response(environ, start_response)

    def _dispatch(self, wsgi_request: WsgiRequest, path: str) -> Any:
        headers = {key.lower(): value for key, value in wsgi_request.headers.items()}
        principal = self.authenticate(path, headers)
        self.faults.check(path)
        handler, path_params = self.router.match(wsgi_request.method, path)
        raw = wsgi_request.get_data()  # Content-Length or chunked (uploads of unknown length)
        if getattr(handler, "raw_body", False):
            body: dict[str, Any] = {}
        elif wsgi_request.mimetype == "multipart/form-data":
            body = _parse_form(raw, wsgi_request.mimetype, wsgi_request.mimetype_params)
        else:
            body = _parse_json(raw)
        return handler(
            Request(
                method=wsgi_request.method,
                path=path,
                query=wsgi_request.args.to_dict(flat=False),
                body=body,
                headers=headers,
                path_params=path_params,
                raw_body=raw,
                principal=principal,
                scheme=wsgi_request.scheme,
            )
        )

    @staticmethod
    def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> WsgiResponse:
        response = WsgiResponse(json.dumps(body), status, content_type="application/json")
        response.headers.update(headers or {})
        return response


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


def _parse_form(raw: bytes, mimetype: str, options: dict[str, str]) -> dict[str, Any]:
    """A multipart form as the dict a JSON body gives: text fields as str, file parts as bytes.

    databricks-sdk's ``workspace.upload`` and DBFS ``put`` post such a form instead of JSON.
    """
    # No size limit of Werkzeug's own: the handlers apply Databricks' limits.
    parser = FormDataParser(max_form_memory_size=None, silent=False)
    try:
        _, form, files = parser.parse(io.BytesIO(raw), mimetype, len(raw), options)
    except ValueError as exc:
        raise ApiError(400, "MALFORMED_REQUEST", f"Invalid multipart/form-data body: {exc}") from None
    fields: dict[str, Any] = dict(form.items())
    fields.update((name, part.read()) for name, part in files.items())
    return fields


class _Handler(WSGIRequestHandler):
    """Werkzeug's request handler, with the scheme of each connection and Databricks-shaped errors."""

    protocol_version = "HTTP/1.1"
    server_version = "devstack-workspace"
    # Headers and body go out in separate writes: without TCP_NODELAY, Nagle's algorithm and the
    # client's delayed ACK can hold a response back ~40 ms.
    disable_nagle_algorithm = True

    def make_environ(self) -> dict[str, Any]:
        environ = super().make_environ()
        # TLS is per connection here (one port, both schemes), not per server.
        environ["wsgi.url_scheme"] = "https" if isinstance(self.connection, ssl.SSLSocket) else "http"
        return environ

    def handle_expect_100(self) -> bool:
        return True  # Werkzeug's run_wsgi answers "Expect: 100-continue" itself; only once on the wire

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """A request Werkzeug cannot even parse (bad request line, headers too long): JSON too."""
        phrase = HTTPStatus(code).phrase if code in HTTPStatus._value2member_map_ else ""
        body = json.dumps(_framework_error(code, message or phrase)).encode()
        try:
            self.send_response(code, message)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except OSError:
            pass
        self.close_connection = True

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.debug('"%s" %s %s', self.requestline, code, size)

    def log(self, type: str, message: str, *args: Any) -> None:  # noqa: A002
        log.log(logging.ERROR if type == "error" else logging.DEBUG, message, *args)


class WorkspaceHTTPServer(tls.OptionalTLSServerMixin, ThreadedWSGIServer):
    """Werkzeug's threaded WSGI server: a thread per connection; TLS and plain HTTP on one port."""

    request_queue_size = 256

    def __init__(self, host: str, port: int, app: WorkspaceApp, ssl_context: ssl.SSLContext | None):
        super().__init__(host, port, app, _Handler)
        # Set after Werkzeug's own setup, which would wrap the listening socket in TLS: here each
        # connection is wrapped only when its client opens with a TLS handshake.
        self.ssl_context = ssl_context


def serve(workspace: Workspace) -> WorkspaceHTTPServer:
    """Bind the server for an assembled workspace (not yet serving)."""
    ctx = workspace.ctx
    app = WorkspaceApp(
        workspace.router,
        authenticate=Authenticator(workspace.iam),
        faults=FaultInjector(ctx.fault_rate),
        org_id=ctx.workspace_id,
        timings=workspace.http_timings,
    )
    ssl_context = tls.server_context(ctx.tls_cert, ctx.tls_key) if ctx.tls_cert else None
    server = WorkspaceHTTPServer(ctx.host, ctx.port, app, ssl_context)
    # Port 0 asks the kernel for a free port: report the real one.
    ctx.port = server.server_address[1]
    return server
