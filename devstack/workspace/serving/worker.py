"""One served entity: a process that loads a model version with mlflow.pyfunc and answers queries.

    python -m devstack.workspace.serving.worker --model-dir DIR [--port 0]

Prints ``ready <port>`` on stdout once the model is loaded; logs go to stderr (the entity's
server log). ``POST /invocations`` takes MLflow's scoring-server JSON (``dataframe_split``,
``dataframe_records``, ``instances``, ``inputs``) and answers as MLflow's own scoring server
does, because it calls that server's ``invocations`` function: a request the signature refuses
gets 400 with MLflow's message, which names the column.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger("devstack.serving.worker")


def _error_message(message: str) -> str:
    # MLflow prefixes schema errors with the whole input ("Failed to predict data '<frame>'.
    # Error: ..."); keep what names the column, not a dump of every row.
    marker = "\nError: "
    message = message.split(marker, 1)[1] if marker in message else message
    return re.sub(
        r"of data '.*?' with schema", "of the request with schema", message, count=1, flags=re.DOTALL
    )


def make_handler(model, input_schema):
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import scoring_server

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, format, *args):  # noqa: A002
            log.debug("%s", format % args)

        def do_GET(self):  # noqa: N802
            self._send(200, b'{"status": "ok"}')

        def do_POST(self):  # noqa: N802
            started = time.monotonic()
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                result = scoring_server.invocations(raw, "application/json", model, input_schema)
                status, body = result.status, result.response.encode()
                if status != 200:
                    body = json.dumps({"error_code": "BAD_REQUEST", "message": result.response}).encode()
            except MlflowException as exc:
                status = 400 if exc.get_http_status_code() < 500 else 500
                code = "BAD_REQUEST" if status == 400 else "INTERNAL_ERROR"
                body = json.dumps({"error_code": code, "message": _error_message(exc.message)}).encode()
            except Exception as exc:  # the model itself failed
                log.exception("prediction failed")
                status = 500
                body = json.dumps(
                    {"error_code": "INTERNAL_ERROR", "message": f"Model prediction failed: {exc}"}
                ).encode()
            log.info("POST /invocations %s %.1f ms", status, (time.monotonic() - started) * 1000)
            self._send(status, body)

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def _exit_with_parent(parent: int) -> None:
    """A served entity never outlives its workspace, even one that was killed (no shutdown hook)."""
    while os.getppid() == parent:
        time.sleep(1)
    log.info("workspace process %s is gone: stopping", parent)
    os._exit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.workspace.serving.worker")
    parser.add_argument("--model-dir", required=True, help="a model version's files (its MLmodel)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    started = time.monotonic()
    log.info("loading model from %s", args.model_dir)
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(args.model_dir)
    input_schema = model.metadata.get_input_schema()
    log.info("model loaded in %.1f s; input schema: %s", time.monotonic() - started, input_schema)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(model, input_schema))
    server.daemon_threads = True
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    print(f"ready {server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
