"""How runs behave: shared job clusters, dependencies, task values, cancel, timeouts, retries, repair."""

from __future__ import annotations

import threading
import time

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.service.compute import ClusterSource, ListClustersFilterBy
from databricks.sdk.service.jobs import (
    NotebookTask,
    RunIf,
    RunResultState,
    SubmitTask,
    TaskDependency,
    TerminationCodeCode,
)

from tests.devstack.jobs_support import (
    ALL_PURPOSE,
    SMALL_CLUSTER,
    Api,
    as_run,
    import_notebooks,
    notebook_task,
    pid_alive,
    small_cluster,
)

FOLDER = "/Shared/runs-behaviour"
NB = {
    name: f"{FOLDER}/{name}" for name in ("ok", "empty", "fail", "sleep", "set_value", "get_value", "flaky")
}


@pytest.fixture(scope="module")
def api(workspace) -> Api:
    import_notebooks(WorkspaceClient(host=workspace.url, token=workspace.token), FOLDER)
    return Api(workspace.url, workspace.token)


def _by_key(run: dict) -> dict[str, dict]:
    latest: dict[str, dict] = {}
    for task in sorted(run["tasks"], key=lambda t: t["start_time"]):
        latest[task["task_key"]] = task
    return latest


def test_tasks_sharing_a_job_cluster_start_it_once(api, workspace):
    cluster = [{"job_cluster_key": "shared", "new_cluster": SMALL_CLUSTER}]
    run = api.wait(
        api.submit(
            run_name="job-cluster",
            job_clusters=cluster,
            tasks=[
                notebook_task("first", NB["empty"], job_cluster_key="shared"),
                notebook_task(
                    "second", NB["empty"], job_cluster_key="shared", depends_on=[{"task_key": "first"}]
                ),
            ],
        )
    )
    assert run["state"]["result_state"] == "SUCCESS"
    assert run["devstack"]["cluster_starts"] == 1
    tasks = _by_key(run)
    cluster_id = tasks["first"]["cluster_instance"]["cluster_id"]
    assert tasks["second"]["cluster_instance"]["cluster_id"] == cluster_id
    as_run(run)  # parses with the sdk's dataclasses
    # the job cluster ended with its run
    deadline = time.monotonic() + 15
    cluster = api.ok("GET", "2.1/clusters/get", {"cluster_id": cluster_id})
    while cluster["state"] != "TERMINATED" and time.monotonic() < deadline:
        time.sleep(0.1)
        cluster = api.ok("GET", "2.1/clusters/get", {"cluster_id": cluster_id})
    assert (cluster["state"], cluster["cluster_source"]) == ("TERMINATED", "JOB")
    # clusters/list shows job clusters too; filter_by.cluster_sources tells them apart (the SDK
    # sends it as query parameters filter_by.cluster_sources=JOB).
    client = WorkspaceClient(host=workspace.url, token=workspace.token)
    assert cluster_id in [c.cluster_id for c in client.clusters.list()]
    jobs = client.clusters.list(filter_by=ListClustersFilterBy(cluster_sources=[ClusterSource.JOB]))
    assert {c.cluster_source for c in jobs if c.cluster_id == cluster_id} == {ClusterSource.JOB}
    all_purpose = ListClustersFilterBy(cluster_sources=[ClusterSource.UI, ClusterSource.API])
    assert cluster_id not in [c.cluster_id for c in client.clusters.list(filter_by=all_purpose)]
    bad = api.call("GET", "2.1/clusters/list", {"filter_by": {"cluster_sources": ["NOPE"]}})
    assert (bad.status_code, bad.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE")


def test_depends_on_and_run_if(api):
    run = api.wait(
        api.submit(
            run_name="run-if",
            tasks=[
                notebook_task("breaks", NB["fail"]),
                notebook_task("after_success", NB["empty"], depends_on=[{"task_key": "breaks"}]),
                notebook_task(
                    "on_failure", NB["ok"], depends_on=[{"task_key": "breaks"}], run_if="AT_LEAST_ONE_FAILED"
                ),
                notebook_task(
                    "always", NB["empty"], depends_on=[{"task_key": "after_success"}], run_if="ALL_DONE"
                ),
                notebook_task(
                    "all_failed", NB["empty"], depends_on=[{"task_key": "on_failure"}], run_if="ALL_FAILED"
                ),
            ],
        )
    )
    results = {key: task["state"].get("result_state") for key, task in _by_key(run).items()}
    assert results == {
        "breaks": "FAILED",
        "after_success": "UPSTREAM_FAILED",
        "on_failure": "SUCCESS",
        "always": "SUCCESS",
        "all_failed": "EXCLUDED",
    }
    # every leaf ended well, but a task failed on the way
    assert run["state"]["result_state"] == "SUCCESS_WITH_FAILURES"


def test_task_values_pass_between_tasks(api):
    run = api.wait(
        api.submit(
            run_name="task-values",
            tasks=[
                notebook_task("producer", NB["set_value"]),
                notebook_task("consumer", NB["get_value"], depends_on=[{"task_key": "producer"}]),
            ],
        )
    )
    assert run["state"]["result_state"] == "SUCCESS", run["state"]
    consumer = _by_key(run)["consumer"]["run_id"]
    assert (
        api.ok("GET", "2.2/jobs/runs/get-output", {"run_id": consumer})["notebook_output"]["result"] == "42"
    )
    value = api.ok(
        "GET",
        "2.0/devstack/task-values/get",
        {"job_run_id": run["run_id"], "task_key": "producer", "key": "answer"},
    )
    assert value == {"value": 42}


def test_cancel_kills_the_driver_process(api):
    run_id = api.submit(run_name="cancel-me", tasks=[notebook_task("sleep", NB["sleep"], {"seconds": "120"})])
    running = api.wait(run_id, until=lambda r: r["state"]["life_cycle_state"] == "RUNNING")
    pid = int(running["tasks"][0]["cluster_instance"]["spark_context_id"])
    assert pid_alive(pid)
    api.ok("POST", "2.2/jobs/runs/cancel", {"run_id": run_id})
    run = api.wait(run_id, timeout=30)
    assert run["state"]["result_state"] == "CANCELED"
    assert run["state"]["user_cancelled_or_timedout"] is True
    deadline = time.monotonic() + 10
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pid_alive(pid), f"driver {pid} still alive after cancel"


def test_task_timeout_ends_timedout(api):
    run = api.wait(
        api.submit(
            run_name="too-slow",
            tasks=[notebook_task("sleep", NB["sleep"], {"seconds": "60"}, timeout_seconds=2)],
        ),
        timeout=40,
    )
    assert run["state"]["result_state"] == "TIMEDOUT"
    assert run["tasks"][0]["state"]["result_state"] == "TIMEDOUT"
    assert "timed out" in run["tasks"][0]["state"]["state_message"]


def test_run_timeout_ends_timedout(api):
    run = api.wait(
        api.submit(
            run_name="run-timeout",
            timeout_seconds=2,
            tasks=[notebook_task("sleep", NB["sleep"], {"seconds": "60"})],
        ),
        timeout=40,
    )
    assert run["state"]["result_state"] == "TIMEDOUT"


def test_idempotency_token_gives_one_run_even_when_concurrent(api):
    body = {
        "run_name": "idem",
        "idempotency_token": f"tok-{time.time()}",
        "tasks": [notebook_task("t", NB["empty"])],
    }
    ids: list[int] = []
    threads = [threading.Thread(target=lambda: ids.append(api.submit(**body))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 1
    job = api.ok(
        "POST",
        "2.2/jobs/create",
        {"name": "idem-job", "tasks": [notebook_task("t", NB["empty"])], "max_concurrent_runs": 5},
    )
    token = f"job-tok-{time.time()}"
    first = api.ok("POST", "2.2/jobs/run-now", {"job_id": job["job_id"], "idempotency_token": token})[
        "run_id"
    ]
    second = api.ok("POST", "2.2/jobs/run-now", {"job_id": job["job_id"], "idempotency_token": token})[
        "run_id"
    ]
    assert first == second
    api.wait(ids[0])
    api.wait(first)


def test_max_concurrent_runs_queues_or_skips(api):
    task = notebook_task("sleep", NB["sleep"], {"seconds": "3"})
    queued_job = api.ok(
        "POST",
        "2.2/jobs/create",
        {"name": "mcr-queue", "tasks": [task], "max_concurrent_runs": 1, "queue": {"enabled": True}},
    )["job_id"]
    first = api.ok("POST", "2.2/jobs/run-now", {"job_id": queued_job})["run_id"]
    second = api.ok("POST", "2.2/jobs/run-now", {"job_id": queued_job})["run_id"]
    assert api.run(second)["state"]["life_cycle_state"] == "QUEUED"
    assert api.run(second)["status"]["queue_details"]["code"] == "MAX_CONCURRENT_RUNS_REACHED"
    done_first, done_second = api.wait(first), api.wait(second, timeout=60)
    assert done_first["state"]["result_state"] == done_second["state"]["result_state"] == "SUCCESS"
    assert done_second["tasks"][0]["start_time"] >= done_first["start_time"]
    assert done_second["end_time"] - done_first["end_time"] >= 2500  # ran one after the other

    skip_job = api.ok(
        "POST", "2.2/jobs/create", {"name": "mcr-skip", "tasks": [task], "max_concurrent_runs": 1}
    )["job_id"]
    running = api.ok("POST", "2.2/jobs/run-now", {"job_id": skip_job})["run_id"]
    skipped = api.run(api.ok("POST", "2.2/jobs/run-now", {"job_id": skip_job})["run_id"])
    assert skipped["state"]["life_cycle_state"] == "SKIPPED"
    assert "concurrent" in skipped["state"]["state_message"]
    api.wait(running)


def test_retries_create_new_attempts(api, tmp_path):
    marker = tmp_path / "flaky-marker"
    run = api.wait(
        api.submit(
            run_name="retry",
            tasks=[
                notebook_task(
                    "flaky",
                    NB["flaky"],
                    {"marker": str(marker)},
                    max_retries=2,
                    min_retry_interval_millis=100,
                )
            ],
        )
    )
    assert run["state"]["result_state"] == "SUCCESS"
    attempts = sorted(run["tasks"], key=lambda t: t["attempt_number"])
    assert [(t["attempt_number"], t["state"]["result_state"]) for t in attempts] == [
        (0, "FAILED"),
        (1, "SUCCESS"),
    ]
    assert api.run(attempts[1]["run_id"])["original_attempt_run_id"] == attempts[0]["run_id"]


def test_repair_reruns_the_failed_task(api, tmp_path):
    marker = tmp_path / "repair-marker"
    run_id = api.submit(
        run_name="repair",
        tasks=[
            notebook_task("first", NB["empty"]),
            notebook_task("flaky", NB["flaky"], {"marker": str(marker)}, depends_on=[{"task_key": "first"}]),
        ],
    )
    failed = api.wait(run_id)
    assert failed["state"]["result_state"] == "FAILED"
    history = api.ok("GET", "2.2/jobs/runs/get", {"run_id": run_id, "include_history": True})[
        "repair_history"
    ]
    assert [h["type"] for h in history] == ["ORIGINAL"]
    repair_id = api.ok("POST", "2.2/jobs/runs/repair", {"run_id": run_id, "rerun_all_failed_tasks": True})[
        "repair_id"
    ]
    repaired = api.wait(run_id)
    assert repaired["state"]["result_state"] == "SUCCESS"
    assert [t["task_key"] for t in repaired["tasks"]].count("first") == 1  # only the failed task ran again
    history = api.ok("GET", "2.2/jobs/runs/get", {"run_id": run_id, "include_history": True})[
        "repair_history"
    ]
    assert history[-1]["id"] == repair_id
    stale = api.call(
        "POST", "2.2/jobs/runs/repair", {"run_id": run_id, "rerun_tasks": ["first"], "latest_repair_id": 1}
    )
    assert stale.status_code == 400


def test_existing_cluster_runs_on_the_long_lived_driver(api):
    cluster_id = api.ok("GET", "2.1/clusters/list", ALL_PURPOSE)["clusters"][0]["cluster_id"]
    first = api.wait(
        api.submit(run_name="ap1", tasks=[notebook_task("t", NB["empty"], existing_cluster_id=cluster_id)])
    )
    second = api.wait(
        api.submit(run_name="ap2", tasks=[notebook_task("t", NB["empty"], existing_cluster_id=cluster_id)])
    )
    assert first["state"]["result_state"] == second["state"]["result_state"] == "SUCCESS"
    assert first["cluster_instance"] == second["cluster_instance"]
    assert api.ok("GET", "2.1/clusters/get", {"cluster_id": cluster_id})["state"] == "RUNNING"
    unknown = api.wait(
        api.submit(run_name="ap3", tasks=[notebook_task("t", NB["empty"], existing_cluster_id="nope")])
    )
    assert unknown["state"]["result_state"] == "FAILED"
    assert "nope" in unknown["state"]["state_message"]


def test_run_page_shows_output_and_error(api):
    import requests

    run = api.wait(
        api.submit(
            run_name="page",
            tasks=[notebook_task("good", NB["ok"], {"x": "page"}), notebook_task("bad", NB["fail"])],
        )
    )
    page = requests.get(run["run_page_url"], timeout=10)
    assert page.status_code == 200
    assert "ok page" in page.text
    assert "the input table has no rows" in page.text
    assert "bad" in page.text and "good" in page.text


def test_git_source_notebook_runs_from_the_branch(api, tmp_path):
    import subprocess

    repo = tmp_path / "repo"
    (repo / "notebooks").mkdir(parents=True)
    (repo / "notebooks" / "hello.py").write_text(
        '# Databricks notebook source\ndbutils.widgets.text("who", "")\ndbutils.notebook.exit("from git " + dbutils.widgets.get("who"))\n'
    )
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=repo, check=True)
    subprocess.run([*git, "add", "."], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "nb"], cwd=repo, check=True)
    task = {
        "task_key": "hello",
        "new_cluster": SMALL_CLUSTER,
        "notebook_task": {
            "notebook_path": "notebooks/hello",
            "source": "GIT",
            "base_parameters": {"who": "me"},
        },
    }
    run = api.wait(
        api.submit(
            run_name="git",
            git_source={"git_url": repo.as_uri(), "git_provider": "gitHub", "git_branch": "main"},
            tasks=[task],
        )
    )
    assert run["state"]["result_state"] == "SUCCESS", run["state"]
    output = api.ok("GET", "2.2/jobs/runs/get-output", {"run_id": run["tasks"][0]["run_id"]})
    assert output["notebook_output"]["result"] == "from git me"

    bad = api.wait(
        api.submit(
            run_name="git-bad-branch",
            tasks=[task],
            git_source={"git_url": repo.as_uri(), "git_provider": "gitHub", "git_branch": "no-such-branch"},
        )
    )
    assert bad["state"]["result_state"] == "FAILED"
    assert "no-such-branch" in bad["state"]["state_message"]


def test_cancel_on_an_all_purpose_cluster_keeps_the_cluster(api):
    cluster_id = api.ok("GET", "2.1/clusters/list", ALL_PURPOSE)["clusters"][0]["cluster_id"]
    task = notebook_task("sleep", NB["sleep"], {"seconds": "120"}, existing_cluster_id=cluster_id)
    run_id = api.submit(run_name="cancel-shared", tasks=[task])
    running = api.wait(run_id, until=lambda r: r["state"]["life_cycle_state"] == "RUNNING")
    pid = int(running["tasks"][0]["cluster_instance"]["spark_context_id"])
    api.ok("POST", "2.2/jobs/runs/cancel", {"run_id": run_id})
    assert api.wait(run_id, timeout=30)["state"]["result_state"] == "CANCELED"
    assert pid_alive(pid)
    assert api.ok("GET", "2.1/clusters/get", {"cluster_id": cluster_id})["state"] == "RUNNING"
    after = api.wait(
        api.submit(run_name="after-cancel", tasks=[{**task, "notebook_task": {"notebook_path": NB["empty"]}}])
    )
    assert after["state"]["result_state"] == "SUCCESS"
    assert int(after["tasks"][0]["cluster_instance"]["spark_context_id"]) == pid


def test_retry_on_timeout_retries_a_timed_out_task(api):
    task = notebook_task(
        "slow", NB["sleep"], {"seconds": "60"}, timeout_seconds=1, max_retries=1, retry_on_timeout=True
    )
    run = api.wait(api.submit(run_name="retry-timeout", tasks=[task]), timeout=60)
    assert run["state"]["result_state"] == "TIMEDOUT"
    assert [t["state"]["result_state"] for t in sorted(run["tasks"], key=lambda t: t["attempt_number"])] == [
        "TIMEDOUT",
        "TIMEDOUT",
    ]


def test_resolved_values_show_the_parameters_the_notebook_got(api):
    run_id = api.submit(
        run_name="resolved",
        tasks=[notebook_task("t", NB["ok"], {"x": "task {{task.name}} of run {{job.run_id}}"})],
    )
    api.wait(run_id)
    run = api.ok("GET", "2.2/jobs/runs/get", {"run_id": run_id, "include_resolved_values": True})
    resolved = run["tasks"][0]["resolved_values"]["notebook_task"]["base_parameters"]
    assert resolved == {"x": f"task t of run {run_id}"}
    output = api.ok("GET", "2.2/jobs/runs/get-output", {"run_id": run["tasks"][0]["run_id"]})
    assert output["notebook_output"]["result"] == f"ok task t of run {run_id}"


def test_tasks_that_never_ran_end_skipped(api, workspace):
    """Tasks ruled out by run_if never ran: termination code SKIPPED, result_state says why."""
    w = WorkspaceClient(host=workspace.url, token=workspace.token)

    def task(key: str, notebook: str, after: str | None = None, run_if: RunIf | None = None) -> SubmitTask:
        return SubmitTask(
            task_key=key,
            notebook_task=NotebookTask(notebook_path=NB[notebook]),
            new_cluster=small_cluster(),
            depends_on=[TaskDependency(task_key=after)] if after else None,
            run_if=run_if,
        )

    run_id = w.jobs.submit(
        run_name="never-ran",
        tasks=[
            task("breaks", "fail"),
            task("publish", "empty", after="breaks"),
            task("cleanup", "empty", after="breaks", run_if=RunIf.AT_LEAST_ONE_FAILED),
            task("alert", "empty", after="cleanup", run_if=RunIf.ALL_FAILED),
        ],
    ).run_id
    api.wait(run_id)
    tasks = {t.task_key: t for t in w.jobs.get_run(run_id).tasks}

    assert tasks["publish"].state.result_state == RunResultState.UPSTREAM_FAILED
    assert tasks["alert"].state.result_state == RunResultState.EXCLUDED
    for key in ("publish", "alert"):
        assert tasks[key].status.termination_details.code == TerminationCodeCode.SKIPPED, key
        assert tasks[key].cluster_instance is None  # it never got a cluster
    # Tasks that ran keep the code of how they ended.
    assert tasks["breaks"].status.termination_details.code == TerminationCodeCode.RUN_EXECUTION_ERROR
    assert tasks["cleanup"].status.termination_details.code == TerminationCodeCode.SUCCESS
