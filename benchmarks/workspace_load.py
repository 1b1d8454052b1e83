"""Load benchmark of the emulated Databricks workspace's control plane.

    .venv/bin/python -m benchmarks.workspace_load [--runs 500] [--parallel 8] [--sleep 2] [--cluster existing]

Starts one workspace (``python -m devstack.workspace``), submits ``--runs`` one-task runs of a
sleeping notebook at once (queueing enabled), and while the scheduler works through them polls
``runs/get`` from several threads the way Airflow's operators do. Measures runs/get latency
(p50/p95/p99/max), that every run ends SUCCESS (none lost or stuck), the RSS of the workspace
process per queued run and of the whole process tree per running run, and the warm path
(submit -> SUCCESS of an empty notebook on an already running cluster). Results go to
``benchmarks/results/workspace_load-<time>.json``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import requests

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from devstack.services import start_workspace  # noqa: E402

TOKEN = "bench-token"
FOLDER = "/Shared/bench"
NOTEBOOKS = {
    "sleep": 'import time\ndbutils.widgets.text("seconds", "2")\ntime.sleep(float(dbutils.widgets.get("seconds")))\n',
    "empty": "pass\n",
}
CLUSTER = {"spark_version": "15.4.x-scala2.12", "node_type_id": "Standard_DS3_v2", "num_workers": 0}
TERMINAL = ("TERMINATED", "SKIPPED", "INTERNAL_ERROR")


class Client:
    def __init__(self, url: str):
        self.url = url
        self.local = threading.local()

    @property
    def session(self) -> requests.Session:
        session = getattr(self.local, "session", None)
        if session is None:
            session = self.local.session = requests.Session()
            session.headers["Authorization"] = f"Bearer {TOKEN}"
        return session

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        response = self.session.request(method, f"{self.url}/api/{path}", json=body, timeout=60)
        response.raise_for_status()
        return response.json()


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


def tree_rss(proc: psutil.Process) -> tuple[int, int]:
    """(RSS of the process itself, RSS of it plus all descendants), in bytes."""
    own = proc.memory_info().rss
    total = own
    for child in proc.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return own, total


def task_of(args, notebook: str, params: dict | None = None) -> dict:
    task = {
        "task_key": "main",
        "notebook_task": {"notebook_path": f"{FOLDER}/{notebook}", "base_parameters": params or {}},
    }
    if args.cluster == "existing":
        task["existing_cluster_id"] = args.cluster_id
    else:
        task["new_cluster"] = CLUSTER
    return task


def wait_terminal(client: Client, run_id: int, timeout: float, interval: float = 0.02) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.call("GET", "2.2/jobs/runs/get", {"run_id": run_id})
        if run["state"]["life_cycle_state"] in TERMINAL:
            return run
        time.sleep(interval)
    raise TimeoutError(f"run {run_id} not terminal after {timeout}s")


def warm_path(client: Client, args, samples: int = 10) -> dict:
    """submit -> SUCCESS of an empty notebook on a running cluster, seen by a client polling every 20 ms."""
    # all-purpose cluster, already running after the load
    latencies = []
    for _ in range(samples):
        started = time.perf_counter()
        run_id = client.call(
            "POST",
            "2.2/jobs/runs/submit",
            {
                "run_name": "warm",
                "tasks": [
                    {**task_of(args, "empty"), "existing_cluster_id": args.cluster_id, "new_cluster": None}
                ],
            },
        )["run_id"]
        run = wait_terminal(client, run_id, 30)
        assert run["state"]["result_state"] == "SUCCESS", run["state"]
        latencies.append((time.perf_counter() - started) * 1000)
    # job cluster: the second task of a job run reuses the cluster the first one started
    job_cluster_gaps = []
    for _ in range(3):
        tasks = [
            {
                "task_key": "first",
                "notebook_task": {"notebook_path": f"{FOLDER}/empty"},
                "job_cluster_key": "c",
            },
            {
                "task_key": "second",
                "notebook_task": {"notebook_path": f"{FOLDER}/empty"},
                "job_cluster_key": "c",
                "depends_on": [{"task_key": "first"}],
            },
        ]
        run_id = client.call(
            "POST",
            "2.2/jobs/runs/submit",
            {
                "run_name": "warm-job-cluster",
                "job_clusters": [{"job_cluster_key": "c", "new_cluster": CLUSTER}],
                "tasks": tasks,
            },
        )["run_id"]
        run = wait_terminal(client, run_id, 60)
        assert run["state"]["result_state"] == "SUCCESS", run["state"]
        by_key = {t["task_key"]: t for t in run["tasks"]}
        job_cluster_gaps.append(by_key["second"]["end_time"] - by_key["first"]["end_time"])
        assert run["devstack"]["cluster_starts"] == 1
    return {
        "all_purpose_submit_to_success_ms": {
            "p50": round(statistics.median(latencies), 1),
            "max": round(max(latencies), 1),
            "samples": latencies,
        },
        "job_cluster_second_task_ms": {"max": max(job_cluster_gaps), "samples": job_cluster_gaps},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--parallel", type=int, default=8, help="--max-parallel-runs of the workspace")
    parser.add_argument("--sleep", type=float, default=2.0, help="seconds each notebook sleeps")
    parser.add_argument(
        "--cluster",
        choices=("existing", "new"),
        default="existing",
        help="existing: all runs on the all-purpose cluster; new: a fresh driver per run",
    )
    parser.add_argument("--pollers", type=int, default=4, help="threads polling runs/get during the load")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="ws-bench-") as tmp:
        service = start_workspace(
            "bench",
            Path(tmp) / "ws",
            token=TOKEN,
            extra_args=["--max-parallel-runs", str(args.parallel), "--log-level", "WARNING"],
        )
        try:
            result = run_benchmark(service, args)
        finally:
            service.stop()
    result["command"] = "python -m benchmarks.workspace_load " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"workspace_load-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2))
    summary = {k: v for k, v in result.items() if k not in ("warm_path",)}
    print(json.dumps(summary, indent=2))
    print(
        json.dumps(
            {k: {kk: vv for kk, vv in v.items() if kk != "samples"} for k, v in result["warm_path"].items()}
        )
    )
    print(f"results written to {path}")
    return 0 if result["lost_or_stuck"] == 0 else 1


def run_benchmark(service, args) -> dict:
    client = Client(service.url)
    proc = psutil.Process(service.process.pid)
    for name, body in NOTEBOOKS.items():
        client.call("POST", "2.0/workspace/mkdirs", {"path": FOLDER})
        client.call(
            "POST",
            "2.0/workspace/import",
            {
                "path": f"{FOLDER}/{name}",
                "format": "SOURCE",
                "language": "PYTHON",
                "overwrite": True,
                "content": base64.b64encode(f"# Databricks notebook source\n{body}".encode()).decode(),
            },
        )
    all_purpose = {"filter_by": {"cluster_sources": ["UI", "API"]}}  # clusters/list has job clusters too
    args.cluster_id = client.call("GET", "2.1/clusters/list", all_purpose)["clusters"][0]["cluster_id"]
    # warm the all-purpose cluster so the load measures the scheduler, not one cluster start
    wait_terminal(
        client,
        client.call(
            "POST",
            "2.2/jobs/runs/submit",
            {
                "run_name": "warm-up",
                "tasks": [
                    {**task_of(args, "empty"), "existing_cluster_id": args.cluster_id, "new_cluster": None}
                ],
            },
        )["run_id"],
        60,
    )
    rss_idle_own, rss_idle_tree = tree_rss(proc)

    body = {"queue": {"enabled": True}, "tasks": [task_of(args, "sleep", {"seconds": str(args.sleep)})]}
    load_at_start = os.getloadavg()[0]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=16) as pool:
        run_ids = list(
            pool.map(
                lambda i: client.call("POST", "2.2/jobs/runs/submit", {**body, "run_name": f"load-{i}"})[
                    "run_id"
                ],
                range(args.runs),
            )
        )
    submit_seconds = time.perf_counter() - started
    stats_after_submit = client.call("GET", "2.0/devstack/stats")
    rss_queued_own, rss_queued_tree = tree_rss(proc)

    latencies: list[float] = []
    slow: list[tuple[float, float]] = []  # (seconds into the load, ms) of calls over 20 ms
    stop = threading.Event()
    peak = {"own": rss_queued_own, "tree": rss_queued_tree, "max_queue": stats_after_submit["queue_length"]}

    def poll() -> None:
        local = Client(service.url)
        rng = random.Random()
        while not stop.is_set():
            run_id = rng.choice(run_ids)
            t0 = time.perf_counter()
            local.call("GET", "2.2/jobs/runs/get", {"run_id": run_id})
            elapsed = (time.perf_counter() - t0) * 1000
            latencies.append(elapsed)
            if elapsed > 20:
                slow.append((round(t0 - started, 1), round(elapsed, 1)))
            time.sleep(0.01)

    def sample_memory() -> None:
        while not stop.is_set():
            own, tree = tree_rss(proc)
            peak["own"], peak["tree"] = max(peak["own"], own), max(peak["tree"], tree)
            time.sleep(0.5)

    threads = [threading.Thread(target=poll, daemon=True) for _ in range(args.pollers)]
    threads.append(threading.Thread(target=sample_memory, daemon=True))
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + args.runs * (args.sleep + 5) / max(1, args.parallel) + 120
    while time.monotonic() < deadline:
        stats = client.call("GET", "2.0/devstack/stats")
        by_state = stats["runs_by_state"]
        if sum(by_state.get(s, 0) for s in TERMINAL) >= args.runs + 1:
            break
        time.sleep(0.5)
    load_seconds = time.perf_counter() - started
    stop.set()
    for thread in threads:
        thread.join()

    server_side = client.call("GET", "2.0/devstack/stats").get("runs_get_server_ms")
    results: dict[str, int] = {}
    for run_id in run_ids:
        run = client.call("GET", "2.2/jobs/runs/get", {"run_id": run_id})
        key = run["state"].get("result_state") or run["state"]["life_cycle_state"]
        results[key] = results.get(key, 0) + 1
    warm = warm_path(client, args)
    running_tree_extra = peak["tree"] - rss_idle_tree
    return {
        "machine": {
            "cpus": psutil.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            # other work on the box skews every figure: record how busy it was
            "loadavg_1min_at_start": round(load_at_start, 2),
            "loadavg_1min_at_end": round(os.getloadavg()[0], 2),
        },
        "runs": args.runs,
        "max_parallel_runs": args.parallel,
        "notebook_sleep_seconds": args.sleep,
        "cluster": args.cluster,
        "submit_all_seconds": round(submit_seconds, 2),
        "queued_after_submit": stats_after_submit["queue_length"],
        "load_seconds": round(load_seconds, 1),
        "ideal_seconds": round(args.runs * args.sleep / args.parallel, 1),
        "results": results,
        "lost_or_stuck": args.runs - results.get("SUCCESS", 0),
        "runs_get_ms": {
            "count": len(latencies),
            "p50": round(percentile(latencies, 50), 2),
            "p95": round(percentile(latencies, 95), 2),
            "p99": round(percentile(latencies, 99), 2),
            "max": round(max(latencies), 2),
            "over_20ms": len(slow),
            "slowest": sorted(slow, key=lambda x: -x[1])[:10],
        },
        "runs_get_server_side_ms": server_side,
        "rss_mb": {
            "workspace_idle": round(rss_idle_own / 2**20, 1),
            "workspace_with_all_queued": round(rss_queued_own / 2**20, 1),
            "workspace_peak": round(peak["own"] / 2**20, 1),
            "tree_idle": round(rss_idle_tree / 2**20, 1),
            "tree_peak": round(peak["tree"] / 2**20, 1),
        },
        "rss_kb_per_queued_run": round((rss_queued_own - rss_idle_own) / 1024 / max(1, args.runs), 1),
        "rss_mb_per_running_run": round(running_tree_extra / 2**20 / args.parallel, 2),
        "warm_path": warm,
    }


if __name__ == "__main__":
    sys.exit(main())
