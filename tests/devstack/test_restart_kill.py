"""SIGKILL of the workspace process during a load of queued runs: every run a client got an id for
is there after the restart and ends terminal; none is lost and none runs twice."""

from __future__ import annotations

import collections
import os
import signal
import threading
import time

import requests
from databricks.sdk import WorkspaceClient

from devstack.services import start_workspace
from tests.devstack.jobs_support import ALL_PURPOSE, TERMINAL, Api, notebook_task
from tests.devstack.test_restart import import_notebook

FOLDER = "/Shared/kill"
RUNS = 40
# Each execution appends its run's key to one file, after a short sleep.
APPEND = (
    "import time\n"
    'dbutils.widgets.text("key", "")\n'
    'dbutils.widgets.text("out", "")\n'
    "time.sleep(0.3)\n"
    'with open(dbutils.widgets.get("out"), "a") as out:\n'
    '    out.write(dbutils.widgets.get("key") + "\\n")\n'
)


def lines(path) -> collections.Counter:
    return collections.Counter(path.read_text().split()) if path.exists() else collections.Counter()


def test_sigkill_during_a_load_of_queued_runs_loses_none_and_runs_none_twice(tmp_path):
    data_dir, out = tmp_path / "ws", tmp_path / "executions.txt"
    args = ["--max-parallel-runs", "2"]
    service = start_workspace("kill", data_dir, token="k", extra_args=args)
    port = service.port
    acknowledged: dict[str, int] = {}  # key -> run id the client was answered with
    try:
        import_notebook(WorkspaceClient(host=service.url, token="k"), f"{FOLDER}/append", APPEND)
        api = Api(service.url, "k")
        cluster_id = api.ok("GET", "2.1/clusters/list", ALL_PURPOSE)["clusters"][0]["cluster_id"]

        def submit_all() -> None:
            for i in range(RUNS):
                key = f"run{i}"
                task = notebook_task(
                    "append",
                    f"{FOLDER}/append",
                    {"key": key, "out": str(out)},
                    existing_cluster_id=cluster_id,
                )
                try:
                    body = {"run_name": key, "tasks": [task], "queue": {"enabled": True}}
                    response = api.call("POST", "2.2/jobs/runs/submit", body)
                except requests.RequestException:
                    return  # the workspace is gone: this run was never acknowledged
                if response.status_code != 200:
                    return
                acknowledged[key] = response.json()["run_id"]
                time.sleep(0.05)  # a steady stream: the kill lands among the submits

        submitter = threading.Thread(target=submit_all)
        submitter.start()
        deadline = time.monotonic() + 120
        while not lines(out) or len(acknowledged) < RUNS // 2:
            assert time.monotonic() < deadline, f"the load never got going: {lines(out)}"
            time.sleep(0.02)
        os.kill(service.process.pid, signal.SIGKILL)  # mid-load: runs executing, queued, being submitted
        submitter.join(60)
        service.process.stop()  # reaps it
    except BaseException:
        service.stop()
        raise
    done_before = lines(out)
    assert len(acknowledged) < RUNS or sum(done_before.values()) < RUNS, "the kill came after the load"

    service = start_workspace("kill", data_dir, token="k", port=port, extra_args=args)
    try:
        api = Api(service.url, "k")
        runs = {key: api.wait(run_id, timeout=180) for key, run_id in acknowledged.items()}
        assert all(run["state"]["life_cycle_state"] in TERMINAL for run in runs.values())
        executions = lines(out)
        assert max(executions.values()) == 1, f"ran twice: {executions.most_common(3)}"
        assert set(executions) <= set(acknowledged) | set(done_before)
        lost = {key for key, run in runs.items() if run["state"].get("result_state") != "SUCCESS"}
        for key in lost:  # only a run that was executing at the kill may fail: it lost its driver
            task = runs[key]["tasks"][0]
            assert task["status"]["termination_details"]["code"] == "DRIVER_ERROR", task["state"]
        assert len(lost) <= 2  # --max-parallel-runs
        for key in set(acknowledged) - lost:
            assert executions[key] == 1, key  # every other acknowledged run ran, once
        assert len(set(acknowledged) - set(done_before) - lost) > 0  # some ran only after the restart
    finally:
        service.stop()
