"""Notebooks and helpers shared by the Jobs/Runs/Clusters tests of the emulated workspace."""

from __future__ import annotations

import base64
import time

import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.service.compute import ClusterSpec
from databricks.sdk.service.jobs import Run
from databricks.sdk.service.workspace import ImportFormat, Language

HEADER = "# Databricks notebook source\n"
NOTEBOOKS = {
    "ok": 'dbutils.widgets.text("x", "")\ndbutils.notebook.exit("ok " + dbutils.widgets.get("x"))\n',
    "empty": "pass\n",
    "fail": 'raise ValueError("the input table has no rows")\n',
    "sleep": (
        'import time\ndbutils.widgets.text("seconds", "60")\n'
        'time.sleep(float(dbutils.widgets.get("seconds")))\ndbutils.notebook.exit("slept")\n'
    ),
    "set_value": 'dbutils.jobs.taskValues.set(key="answer", value=42)\n',
    "get_value": (
        'dbutils.notebook.exit(str(dbutils.jobs.taskValues.get(taskKey="producer", key="answer", default=-1)))\n'
    ),
    "flaky": (
        "import os\n"
        'dbutils.widgets.text("marker", "")\n'
        'marker = dbutils.widgets.get("marker")\n'
        "if not os.path.exists(marker):\n"
        '    open(marker, "w").close()\n'
        '    raise RuntimeError("first attempt fails on purpose")\n'
        'dbutils.notebook.exit("second attempt ok")\n'
    ),
}
TERMINAL = ("TERMINATED", "SKIPPED", "INTERNAL_ERROR")
SMALL_CLUSTER = {"spark_version": "15.4.x-scala2.12", "node_type_id": "Standard_DS3_v2", "num_workers": 0}


def small_cluster() -> ClusterSpec:
    return ClusterSpec.from_dict(SMALL_CLUSTER)


def import_notebooks(client: WorkspaceClient, folder: str, notebooks: dict[str, str] | None = None) -> str:
    """Python source notebooks (name -> body without the header) into ``folder``; by default
    :data:`NOTEBOOKS`."""
    client.workspace.mkdirs(folder)
    for name, body in (NOTEBOOKS if notebooks is None else notebooks).items():
        client.workspace.import_(
            f"{folder}/{name}",
            content=base64.b64encode((HEADER + body).encode()).decode(),
            format=ImportFormat.SOURCE,
            language=Language.PYTHON,
            overwrite=True,
        )
    return folder


# clusters/list answers job clusters too: a test that wants the workspace's all-purpose cluster
# asks for it by source (filter_by.cluster_sources of the Clusters API).
ALL_PURPOSE = {"filter_by": {"cluster_sources": ["UI", "API"]}}


class Api:
    """Raw REST calls (for the shapes and errors the sdk hides)."""

    def __init__(self, url: str, token: str):
        self.url = url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, body: dict | None = None, **kwargs) -> requests.Response:
        return self.session.request(method, f"{self.url}/api/{path}", json=body, timeout=30, **kwargs)

    def ok(self, method: str, path: str, body: dict | None = None) -> dict:
        response = self.call(method, path, body)
        assert response.status_code == 200, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()

    def run(self, run_id: int) -> dict:
        return self.ok("GET", "2.2/jobs/runs/get", {"run_id": run_id})

    def wait(
        self, run_id: int, timeout: float = 90, until=lambda r: r["state"]["life_cycle_state"] in TERMINAL
    ) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            run = self.run(run_id)
            if until(run):
                return run
            if time.monotonic() > deadline:
                raise AssertionError(f"run {run_id} did not get there within {timeout}s: {run['state']}")
            time.sleep(0.1)

    def submit(self, **body) -> int:
        return self.ok("POST", "2.2/jobs/runs/submit", body)["run_id"]

    def stats(self) -> dict:
        return self.ok("GET", "2.0/devstack/stats")


def notebook_task(key: str, path: str, params: dict | None = None, **extra) -> dict:
    task = {"task_key": key, "notebook_task": {"notebook_path": path, "base_parameters": params or {}}}
    if not any(k in extra for k in ("new_cluster", "job_cluster_key", "existing_cluster_id")):
        task["new_cluster"] = SMALL_CLUSTER
    task.update(extra)
    return task


def as_run(data: dict) -> Run:
    return Run.from_dict(data)


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
