"""The workspace's MLflow tracking API vs the MLflow server reached directly.

    .venv/bin/python -m benchmarks.workspace_mlflow [--calls 500] [--mb 64] [--files 4] [--rounds 3]

Starts a real ``mlflow server`` and one emulated workspace in front of it, then side by side:

- latency of a small call: ``GET /api/2.0/mlflow/experiments/get`` (keep-alive session), the
  workspace and the server alternating, ``--calls`` each; p50 / p99 as the client sees them;
- run-artifact throughput: a directory of ``--files`` random files (``--mb`` MB in all) logged
  to and downloaded from a run with MLflow's own client, once on tracking URI ``databricks``
  (the workspace: ``databricks`` artifact repository, signed URLs relayed to the server's
  artifact proxy) and once on the server's URL (its ``mlflow-artifacts`` proxy directly).

The figure per direction is the median MB/s over ``--rounds``.
Results go to ``benchmarks/results/workspace_mlflow-<time>.json``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.results_file import save, timed  # noqa: E402

TOKEN = "dapi-bench-workspace-mlflow"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--mb", type=int, default=64)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    import requests

    from devstack.services import start_mlflow_server, start_workspace

    with tempfile.TemporaryDirectory(prefix="bench-workspace-mlflow-") as tmp:
        root = Path(tmp)
        payload = root / "payload"
        payload.mkdir()
        for i in range(args.files):
            (payload / f"part-{i}.bin").write_bytes(os.urandom(args.mb * 1024 * 1024 // args.files))
        total_mb = sum(f.stat().st_size for f in payload.iterdir()) / 1024 / 1024
        server = start_mlflow_server(root / "mlflow", name="bench-mlflow")
        workspace = start_workspace("bench", root / "ws", token=TOKEN, mlflow_tracking_uri=server.url)
        try:
            os.environ.update(DATABRICKS_HOST=workspace.url, DATABRICKS_TOKEN=TOKEN)
            import mlflow

            ws = requests.Session()
            ws.headers["Authorization"] = f"Bearer {TOKEN}"
            ws.post(
                f"{workspace.url}/api/2.0/workspace/mkdirs", json={"path": "/Shared/bench"}
            ).raise_for_status()
            via_workspace = mlflow.MlflowClient(tracking_uri="databricks")
            direct = mlflow.MlflowClient(tracking_uri=server.url)
            experiment = via_workspace.create_experiment("/Shared/bench/workspace-mlflow")

            # Small call: both ends warm, alternating so load on the box hits both alike.
            plain = requests.Session()
            latency: dict[str, list[float]] = {"workspace": [], "server": []}
            targets = {"workspace": (ws, workspace.url), "server": (plain, server.url)}
            for i in range(args.calls + 20):
                for name, (session, url) in targets.items():
                    started = time.perf_counter()
                    answer = session.get(
                        f"{url}/api/2.0/mlflow/experiments/get", params={"experiment_id": experiment}
                    )
                    took = (time.perf_counter() - started) * 1000
                    answer.raise_for_status()
                    if i >= 20:  # the first calls open connections and warm caches
                        latency[name].append(took)

            seconds: dict[str, list[float]] = {
                k: [] for k in ("workspace_up", "workspace_down", "server_up", "server_down")
            }
            for round_ in range(args.rounds):
                for name, client in (("workspace", via_workspace), ("server", direct)):
                    run = client.create_run(experiment)
                    seconds[f"{name}_up"].append(timed(client.log_artifacts, run.info.run_id, str(payload)))
                    out = root / f"{name}-{round_}"
                    out.mkdir()
                    seconds[f"{name}_down"].append(
                        timed(client.download_artifacts, run.info.run_id, "", str(out))
                    )
                    assert (out / "part-0.bin").read_bytes() == (payload / "part-0.bin").read_bytes()
                    client.set_terminated(run.info.run_id)

            figures = {
                "calls": args.calls,
                "experiments_get_ms": {
                    name: {
                        "p50": round(statistics.median(v), 2),
                        "p99": round(percentile(v, 99), 2),
                        "max": round(max(v), 2),
                    }
                    for name, v in latency.items()
                },
                "added_latency_p50_ms": round(
                    statistics.median(latency["workspace"]) - statistics.median(latency["server"]), 2
                ),
                "payload_mb": round(total_mb, 1),
                "files": args.files,
                "rounds": args.rounds,
                "seconds": {k: [round(v, 3) for v in vs] for k, vs in seconds.items()},
                "median_mb_per_s": {
                    k: round(total_mb / statistics.median(vs), 1) for k, vs in seconds.items()
                },
            }
            save("workspace_mlflow", figures)
        finally:
            workspace.stop()
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
