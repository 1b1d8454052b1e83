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
handlers stay synchronous in their connection's thread.

Connections are kept alive (HTTP/1.1), which Werkzeug's server does not do on its own: it closes
every connection, so each call paid a TCP connect (and a TLS handshake) and a new thread. A
connection closes when the client asks (``Connection: close``, HTTP/1.0 without keep-alive), when
a request's body was not read to its end, when an answer broke off, and after ``_Handler.timeout``
seconds idle; the server's close ends the reads of idle connections. The application reads every
request's whole body before sign-in, so refused calls (401, 404, injected faults) keep it too.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from werkzeug.exceptions import HTTPException
from werkzeug.formparser import FormDataParser
from werkzeug.serving import DechunkedInput, ThreadedWSGIServer, WSGIRequestHandler
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

# Set in the WSGI environ when a streamed answer broke off: its connection must close.
_ANSWER_BROKEN = "devstack.answer_broken"

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
        if response.is_streamed:
            return _watched(response(environ, start_response), environ)
        return response(environ, start_response)

    def _dispatch(self, wsgi_request: WsgiRequest, path: str) -> Any:
        # The whole body first, whatever the answer: the next request on a kept-alive connection
        # starts after it, refused calls (401, 404, 405, injected faults) included.
        try:
            raw = wsgi_request.get_data()  # Content-Length or chunked (uploads of unknown length)
        except OSError as exc:  # a broken chunk, the client gone or too slow
            raise ApiError(400, "MALFORMED_REQUEST", f"Could not read the request body: {exc}") from None
        headers = {key.lower(): value for key, value in wsgi_request.headers.items()}
        principal = self.authenticate(path, headers)
        self.faults.check(path)
        handler, path_params = self.router.match(wsgi_request.method, path)
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


def _watched(chunks: Iterable[bytes], environ: dict[str, Any]) -> Iterable[bytes]:
    """A streamed answer's chunks, marking the environ when producing them fails."""
    try:
        yield from chunks
    except BaseException:
        environ[_ANSWER_BROKEN] = True
        raise
    finally:
        close = getattr(chunks, "close", None)
        if close:
            close()


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


class _RequestBody(io.RawIOBase):
    """One request's body, read from its connection and never past its end: ``Content-Length``
    bytes, or chunks up to the last one (de-chunked by Werkzeug). ``done`` once read to the end."""

    def __init__(self, rfile: io.BufferedIOBase, headers: Any):
        if "chunked" in headers.get("Transfer-Encoding", "").lower():
            self._stream: Any = DechunkedInput(rfile)
            self._left: int | None = None
        else:
            self._stream = rfile
            self._left = int(headers.get("Content-Length") or 0)  # parse_request checked it
        self.done = self._left == 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self.done:  # Werkzeug's drain asks for 10 MB at a time: no such buffer for nothing
            return b""
        if self._left is not None and (size < 0 or size > self._left):
            size = self._left
        return super().read(size)

    def readinto(self, buffer: Any) -> int:
        if self.done:
            return 0
        if self._left is None:
            read = self._stream.readinto(buffer)
            self.done = read == 0  # Werkzeug's DechunkedInput returns 0 only after the last chunk
            return read
        read = self._stream.readinto(memoryview(buffer)[: self._left])
        self._left -= read
        self.done = self._left == 0  # a read of 0 before that: the client left mid-body
        return read


class _Handler(WSGIRequestHandler):
    """Werkzeug's request handler, with the scheme of each connection, Databricks-shaped errors
    and keep-alive.

    Werkzeug's ``run_wsgi`` sends ``Connection: close`` on every answer and, after it, drains
    ``self.rfile`` (which on a kept-alive connection would swallow the next request). Rather than
    copy ``run_wsgi``, two hooks: during a request ``self.rfile`` is that request's body alone
    (:class:`_RequestBody`, also its ``wsgi.input``), so the drain reads at most what is left of
    the body; and :meth:`send_header` drops Werkzeug's ``Connection: close`` unless the
    connection must close.
    """

    protocol_version = "HTTP/1.1"
    server_version = "devstack-workspace"
    # Headers and body go out in separate writes: without TCP_NODELAY, Nagle's algorithm and the
    # client's delayed ACK can hold a response back ~40 ms.
    disable_nagle_algorithm = True
    # Seconds a kept-alive connection may stay idle (or a read/write stall) before it is closed.
    timeout = 10
    _body: _RequestBody | None = None

    def setup(self) -> None:
        super().setup()
        self.server.connection_opened(self.connection)

    def finish(self) -> None:
        self.server.connection_closed(self.connection)
        super().finish()

    def run_wsgi(self) -> None:
        socket_rfile = self.rfile
        self.rfile = self._body = _RequestBody(socket_rfile, self.headers)
        try:
            super().run_wsgi()
        finally:
            self.rfile = socket_rfile
        if self.environ.get(_ANSWER_BROKEN):
            self.close_connection = True

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        length = self.headers.get("Content-Length")
        if length is not None and not (length.isascii() and length.isdigit()):
            # Where this body ends, and so where the next request starts, is unknown.
            self.send_error(HTTPStatus.BAD_REQUEST, f"Invalid Content-Length {length!r}")
            return False
        return True

    def make_environ(self) -> dict[str, Any]:
        environ = super().make_environ()
        # TLS is per connection here (one port, both schemes), not per server.
        environ["wsgi.url_scheme"] = "https" if isinstance(self.connection, ssl.SSLSocket) else "http"
        # The body alone, already de-chunked and ending where the request does.
        environ["wsgi.input"] = self._body
        environ["wsgi.input_terminated"] = True
        return environ

    def send_header(self, keyword: str, value: str) -> None:
        if keyword.lower() == "connection" and value.lower() == "close" and self._keeps_alive():
            if self.request_version == "HTTP/1.0":  # HTTP/1.1 keeps alive unless told otherwise
                super().send_header("Connection", "keep-alive")
            return
        super().send_header(keyword, value)

    def _keeps_alive(self) -> bool:
        """Whether the connection can take another request after this answer."""
        # close_connection: the client's wish (parse_request), or an error already seen.
        return not self.close_connection and self._body is not None and self._body.done

    def connection_dropped(self, error: BaseException, environ: dict[str, Any] | None = None) -> None:
        self.close_connection = True

    def handle_expect_100(self) -> bool:
        return True  # Werkzeug's run_wsgi answers "Expect: 100-continue" itself; only once on the wire

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """A request Werkzeug cannot even parse (bad request line, headers too long): JSON too."""
        phrase = HTTPStatus(code).phrase if code in HTTPStatus._value2member_map_ else ""
        body = json.dumps(_framework_error(code, message or phrase)).encode()
        self.close_connection = True
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

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.debug('"%s" %s %s', self.requestline, code, size)

    def log_error(self, format: str, *args: Any) -> None:  # noqa: A002
        if format.startswith("Request timed out"):  # an idle kept-alive connection: expected
            log.debug(format, *args)
        else:
            super().log_error(format, *args)

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
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._closed = False

    def connection_opened(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)
            if self._closed:  # accepted just before the close
                _end_reads(connection)

    def connection_closed(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def server_close(self) -> None:
        """Stop listening, and end the reads of kept-alive connections: their threads would else
        wait out their idle timeout, or answer one more call of a workspace that is going away.
        An answer being written still goes out."""
        super().server_close()
        with self._connections_lock:
            self._closed = True
            for connection in self._connections:
                _end_reads(connection)


def _end_reads(connection: socket.socket) -> None:
    """The connection's next read sees its end; writes still go out."""
    try:
        # socket.socket's own shutdown: SSLSocket.shutdown would also drop the TLS state that
        # an answer still being written needs.
        socket.socket.shutdown(connection, socket.SHUT_RD)
    except OSError:
        pass


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
