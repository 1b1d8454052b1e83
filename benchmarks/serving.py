"""Model Serving on the emulated workspace vs MLflow's own scoring server, side by side.

    .venv/bin/python -m benchmarks.serving [--requests 300] [--seconds 5]

Starts a real ``mlflow server`` and one emulated workspace, registers a small scikit-learn
model (3 named columns) as ``prod.ml.bench`` version 1 through the workspace's Unity Catalog
registry, then serves that same version twice:

- endpoint: a serving endpoint of the workspace (``POST /serving-endpoints/bench/invocations``,
  bearer token checked, routed to the served entity's own process);
- mlflow: ``mlflow models serve --env-manager local`` on the version's files.

Measured with one keep-alive ``requests`` session per client: latency p50/p99 of ``--requests``
sequential 1-row and 100-row ``dataframe_split`` requests (after 20 warm-up requests), requests
per second with 8 concurrent clients sending 1-row requests for ``--seconds``, and a cold start:
a scale-to-zero entity idle past ``--serving-idle-seconds`` answering its first request, against
``mlflow models serve`` started from nothing until its first answer.
Results go to ``benchmarks/results/serving-<time>.json``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.results_file import save  # noqa: E402

IDLE_SECONDS = 3.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))], 2)


def latencies(session, url: str, body: dict, n: int, headers: dict) -> list[float]:
    for _ in range(20):
        session.post(url, json=body, headers=headers, timeout=60).raise_for_status()
    out = []
    for _ in range(n):
        started = time.perf_counter()
        session.post(url, json=body, headers=headers, timeout=60).raise_for_status()
        out.append((time.perf_counter() - started) * 1000)
    return out


def throughput(url: str, body: dict, headers: dict, seconds: float, clients: int = 8) -> float:
    import requests

    counts = [0] * clients
    stop = time.monotonic() + seconds

    def client(i: int) -> None:
        with requests.Session() as session:
            while time.monotonic() < stop:
                session.post(url, json=body, headers=headers, timeout=60).raise_for_status()
                counts[i] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return round(sum(counts) / seconds, 1)


def start_mlflow_serve(model_dir: Path, port: int, log: Path) -> tuple[subprocess.Popen, float]:
    """``mlflow models serve`` of the model's files; returns the process and seconds to first answer."""
    import requests

    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", str(model_dir), "--env-manager", "local"]
        + ["--host", "127.0.0.1", "-p", str(port)],
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        # MLflow runs ``uvicorn`` by name: the venv's bin dir must be on PATH.
        env={
            **os.environ,
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        },
    )
    body = {"dataframe_split": {"columns": ["age", "bmi", "bp"], "data": [[0.1, 0.2, 0.3]]}}
    while True:
        try:
            if requests.post(f"http://127.0.0.1:{port}/invocations", json=body, timeout=5).ok:
                return proc, time.perf_counter() - started
        except requests.ConnectionError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow models serve exited: {log.read_text()[-2000:]}")
        time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)

    import requests
    from databricks.sdk.service.serving import EndpointCoreConfigInput, ServedEntityInput

    from devstack.processes import free_port
    from devstack.services import start_mlflow_server
    from tests.devstack.serving_support import TOKEN, frame, register_versions, start_serving_workspace

    figures: dict = {"requests": args.requests, "seconds": args.seconds}
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        root = Path(tmp)
        server = start_mlflow_server(root / "mlflow", name="bench-mlflow")
        stack = start_serving_workspace(root, server.url, idle_seconds=IDLE_SECONDS)
        mlflow_proc = None
        try:
            register_versions(stack, "prod.ml.bench", [[1.0, 2.0, 3.0]])
            w = stack.sdk()
            model_dir = stack.metastore_dir / "models" / "prod" / "ml" / "bench" / "1"
            entity = ServedEntityInput(entity_name="prod.ml.bench", entity_version="1", workload_size="Small")
            w.serving_endpoints.create_and_wait(
                "bench", config=EndpointCoreConfigInput(name="bench", served_entities=[entity])
            )
            mlflow_port = free_port()
            mlflow_proc, mlflow_start = start_mlflow_serve(model_dir, mlflow_port, root / "mlflow-serve.log")
            targets = {
                "endpoint": (
                    f"{stack.workspace.url}/serving-endpoints/bench/invocations",
                    {"Authorization": f"Bearer {TOKEN}"},
                ),
                "mlflow": (f"http://127.0.0.1:{mlflow_port}/invocations", {}),
            }
            for rows in (1, 100):
                x = frame(rows)
                body = {"dataframe_split": {"columns": list(x.columns), "data": x.to_numpy().tolist()}}
                for target, (url, headers) in targets.items():
                    with requests.Session() as session:
                        samples = latencies(session, url, body, args.requests, headers)
                    figures[f"{target}_{rows}row_ms"] = {
                        "p50": percentile(samples, 0.5),
                        "p99": percentile(samples, 0.99),
                        "mean": round(statistics.fmean(samples), 2),
                    }
            x = frame(1)
            body = {"dataframe_split": {"columns": list(x.columns), "data": x.to_numpy().tolist()}}
            for target, (url, headers) in targets.items():
                figures[f"{target}_rps_8_clients"] = throughput(url, body, headers, args.seconds)

            # Cold start: scale-to-zero entity idle past the workspace's idle time.
            cold = ServedEntityInput(
                entity_name="prod.ml.bench",
                entity_version="1",
                workload_size="Small",
                scale_to_zero_enabled=True,
            )
            w.serving_endpoints.create_and_wait(
                "cold", config=EndpointCoreConfigInput(name="cold", served_entities=[cold])
            )
            deadline = time.monotonic() + 60
            while "Scaled to zero" not in (
                w.serving_endpoints.get("cold").config.served_entities[0].state.deployment_state_message or ""
            ):
                if time.monotonic() > deadline:
                    raise RuntimeError("the cold endpoint never scaled to zero")
                time.sleep(0.5)
            url = f"{stack.workspace.url}/serving-endpoints/cold/invocations"
            started = time.perf_counter()
            requests.post(
                url, json=body, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120
            ).raise_for_status()
            figures["endpoint_cold_start_s"] = round(time.perf_counter() - started, 2)
            figures["mlflow_serve_start_to_first_answer_s"] = round(mlflow_start, 2)
        finally:
            if mlflow_proc is not None:
                mlflow_proc.terminate()
                mlflow_proc.wait(timeout=15)
            stack.workspace.stop()
            server.stop()
    save("serving", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
