"""The workspace keeps HTTP/1.1 connections alive, over plain HTTP and TLS: after refused calls
with a body and chunked uploads too; it closes them when the client asks, when idle, and when
the server closes."""

from __future__ import annotations

import json
import socket
import threading
from collections import deque
from http.client import HTTPConnection, HTTPResponse, HTTPSConnection, IncompleteRead
from pathlib import Path

import pytest

from devstack import tls
from devstack.services import Service, start_workspace
from devstack.workspace.http.faults import FaultInjector
from devstack.workspace.http.request import Response, raw_body
from devstack.workspace.http.router import Router
from devstack.workspace.http.server import WorkspaceApp, WorkspaceHTTPServer, _Handler

TOKEN = "keepalive-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def workspace_tls(tmp_path_factory) -> tuple[Service, Path]:
    """A workspace answering TLS and plain HTTP on its port, and the CA that signed its certificate."""
    root = tmp_path_factory.mktemp("ws-keepalive")
    cert, key = tls.issue_server_cert(root / "tls", root / "cert")
    service = start_workspace(
        "keepalive", root / "ws", token=TOKEN, extra_args=["--tls-cert", str(cert), "--tls-key", str(key)]
    )
    yield service, root / "tls" / tls.CA_CERT
    service.stop()


def _connect(workspace_tls, scheme: str) -> HTTPConnection:
    service, ca = workspace_tls
    if scheme == "https":
        return HTTPSConnection("127.0.0.1", service.port, timeout=10, context=tls.client_context(ca))
    return HTTPConnection("127.0.0.1", service.port, timeout=10)


def _call(conn: HTTPConnection, method: str, path: str, body=None, headers=None) -> tuple[HTTPResponse, dict]:
    conn.request(method, path, body=body, headers={**AUTH, **(headers or {})})
    response = conn.getresponse()
    data = response.read()
    return response, json.loads(data) if data else {}


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_calls_share_one_connection(workspace_tls, scheme):
    conn = _connect(workspace_tls, scheme)
    try:
        first, _ = _call(conn, "GET", "/api/2.2/jobs/list")
        assert first.status == 200
        sock = conn.sock
        assert sock is not None and first.getheader("Connection") is None
        for _ in range(3):
            response, _ = _call(conn, "GET", "/api/2.2/jobs/list")
            assert response.status == 200
            assert conn.sock is sock, "the client had to reconnect: the server closed the connection"
    finally:
        conn.close()


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_refused_calls_with_a_body_keep_the_connection(workspace_tls, scheme):
    """A 401, 404 or 405 answered before any handler reads the body: the body is still consumed,
    so the next request on the connection parses."""
    conn = _connect(workspace_tls, scheme)
    payload = json.dumps({"run_name": "x", "tasks": [{"task_key": "t" * 2000}]})
    try:
        conn.request("POST", "/api/2.2/jobs/runs/submit", body=payload)  # no token
        refused = conn.getresponse()
        assert refused.status == 401
        refused.read()
        sock = conn.sock
        assert sock is not None, "the server closed the connection after the 401"
        not_found, body = _call(conn, "POST", "/api/2.2/jobs/no-such-endpoint", body=payload)
        assert not_found.status == 404 and body["error_code"] == "ENDPOINT_NOT_FOUND"
        wrong_method, _ = _call(conn, "DELETE", "/api/2.2/jobs/list", body=payload)
        assert wrong_method.status == 405
        good, _ = _call(conn, "GET", "/api/2.2/jobs/list")
        assert good.status == 200
        assert conn.sock is sock
    finally:
        conn.close()


def test_chunked_upload_then_another_call(workspace_tls):
    conn = _connect(workspace_tls, "http")
    try:
        # An iterable body without a length: http.client sends it chunked.
        chunks = iter([b'{"path": ', b'"/Shared/keep', b'alive"}'])
        created, _ = _call(
            conn,
            "POST",
            "/api/2.0/workspace/mkdirs",
            body=chunks,
            headers={"Content-Type": "application/json"},
        )
        assert created.status == 200
        sock = conn.sock
        assert sock is not None, "the server closed the connection after the chunked upload"
        status, body = _call(conn, "GET", "/api/2.0/workspace/get-status?path=/Shared/keepalive")
        assert status.status == 200 and body["object_type"] == "DIRECTORY"
        assert conn.sock is sock
    finally:
        conn.close()


def _raw_exchange(port: int, request: bytes) -> bytes:
    """Everything the server sends until it closes (a timeout if it keeps the connection)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        return sock.makefile("rb").read()


def test_connection_close_is_honoured(workspace_tls):
    service, _ = workspace_tls
    auth = f"Authorization: Bearer {TOKEN}\r\n".encode()
    closed = _raw_exchange(
        service.port, b"GET /api/2.2/jobs/list HTTP/1.1\r\nHost: x\r\n" + auth + b"Connection: close\r\n\r\n"
    )
    assert closed.startswith(b"HTTP/1.1 200") and b"\r\nConnection: close\r\n" in closed
    old_client = _raw_exchange(service.port, b"GET /api/2.2/jobs/list HTTP/1.0\r\n" + auth + b"\r\n")
    assert old_client.startswith(b"HTTP/1.1 200")
    # HTTP/1.0 with keep-alive is told so, and the connection stays for a second call.
    conn = _connect(workspace_tls, "http")
    conn._http_vsn, conn._http_vsn_str = 10, "HTTP/1.0"
    try:
        first, _ = _call(conn, "GET", "/api/2.2/jobs/list", headers={"Connection": "keep-alive"})
        assert first.status == 200 and first.getheader("Connection") == "keep-alive"
    finally:
        conn.close()


# --------------------------------------------------------------------------- the server's life cycle


def _broken_stream():
    yield b"first part"
    raise RuntimeError("the export failed half-way")


@pytest.fixture
def bare_server():
    """The workspace's HTTP server with a few routes, serving in a thread of this process."""
    router = Router()
    router.add("GET", "2.0", "ping", lambda request: {"pong": True})
    router.add("POST", "2.0", "size", raw_body(lambda request: {"size": len(request.raw_body)}))
    router.add("GET", "2.0", "stream", lambda request: Response(iter([b"one ", b"two"]), "text/plain"))
    router.add(
        "GET",
        "2.0",
        "broken-chunked",
        lambda request: Response(_broken_stream(), "text/plain"),
    )
    router.add(
        "GET",
        "2.0",
        "broken-sized",
        lambda request: Response(_broken_stream(), "text/plain", headers={"Content-Length": "100"}),
    )
    app = WorkspaceApp(
        router,
        authenticate=lambda path, headers: None,
        faults=FaultInjector(0.0),
        org_id="1",
        timings=deque(maxlen=100),
    )
    server = WorkspaceHTTPServer("127.0.0.1", 0, app, None)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def _ping(server: WorkspaceHTTPServer) -> HTTPConnection:
    conn = HTTPConnection("127.0.0.1", server.server_address[1], timeout=5)
    conn.request("GET", "/api/2.0/ping")
    response = conn.getresponse()
    assert response.status == 200 and json.loads(response.read()) == {"pong": True}
    return conn


def test_closing_the_server_ends_kept_alive_connections(bare_server):
    conn = _ping(bare_server)
    try:
        bare_server.shutdown()
        bare_server.server_close()  # as the workspace's entry point stops
        # The connection's thread stops reading and closes it (recv times out after 5 s otherwise).
        assert conn.sock.recv(1) == b""
    finally:
        conn.close()


def test_idle_connections_are_closed_after_the_timeout(bare_server):
    bare_server.RequestHandlerClass = type("_QuickHandler", (_Handler,), {"timeout": 0.2})
    conn = _ping(bare_server)
    try:
        assert conn.sock.recv(1) == b""  # closed by the server after 0.2 s idle
    finally:
        conn.close()


def test_streamed_answers_keep_the_connection_unless_they_break(bare_server):
    conn = _ping(bare_server)
    try:
        conn.request("GET", "/api/2.0/stream")
        streamed = conn.getresponse()
        assert streamed.getheader("Transfer-Encoding") == "chunked" and streamed.read() == b"one two"
        sock = conn.sock
        assert sock is not None
        conn.request("GET", "/api/2.0/ping")
        assert conn.getresponse().read() == b'{"pong": true}' and conn.sock is sock
        for path in ("/api/2.0/broken-chunked", "/api/2.0/broken-sized"):
            conn.request("GET", path)
            broken = conn.getresponse()
            with pytest.raises(IncompleteRead):  # the server closed instead of finishing the answer
                broken.read()
            conn.close()
    finally:
        conn.close()


def test_large_bodies_arriving_in_pieces_are_read_whole(bare_server):
    big = b"x" * 3_000_000

    def pieces():
        for start in range(0, len(big), 100_000):
            yield big[start : start + 100_000]

    conn = _ping(bare_server)
    sock = conn.sock
    try:
        for headers in ({}, {"Content-Length": str(len(big))}):  # chunked, then sized
            conn.request("POST", "/api/2.0/size", body=pieces(), headers=headers)
            assert json.loads(conn.getresponse().read()) == {"size": len(big)}
        conn.request("GET", "/api/2.0/ping")
        assert conn.getresponse().status == 200 and conn.sock is sock
    finally:
        conn.close()
