"""Task types of job workflows through databricks-sdk: condition, run-job, for-each and Python wheel
tasks, run by the emulated workspace as Databricks runs them."""

from __future__ import annotations

import datetime
import io
import time
import zipfile
from pathlib import Path

import pytest
import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import InvalidParameterValue
from databricks.sdk.service import jobs
from databricks.sdk.service.catalog import VolumeType
from databricks.sdk.service.compute import Library
from databricks.sdk.service.workspace import ImportFormat

from tests.devstack.jobs_support import import_notebooks, small_cluster

FOLDER = "/Shared/task-types"
NOTEBOOKS = {
    # exits with its widget x
    "echo": 'dbutils.widgets.text("x", "")\ndbutils.notebook.exit(dbutils.widgets.get("x"))\n',
    # sets the task values the control-flow tasks read
    "produce": (
        'dbutils.jobs.taskValues.set(key="bad_rows", value=3)\n'
        'dbutils.jobs.taskValues.set(key="regions", value=[{"name": "west", "rows": 1}, '
        '{"name": "east", "rows": 2}])\n'
    ),
    # fails when its widget x is "0"
    "fail_on_zero": (
        'dbutils.widgets.text("x", "")\n'
        'if dbutils.widgets.get("x") == "0":\n'
        '    raise ValueError("zero is not a valid input")\n'
        'dbutils.notebook.exit("ok " + dbutils.widgets.get("x"))\n'
    ),
    "sleep": "import time\ntime.sleep(120)\n",
    # fails the first time it runs for a marker file, succeeds after
    "flaky": (
        "import os\n"
        'dbutils.widgets.text("marker", "")\n'
        'marker = dbutils.widgets.get("marker")\n'
        "if not os.path.exists(marker):\n"
        '    open(marker, "w").close()\n'
        '    raise RuntimeError("first attempt fails on purpose")\n'
        'dbutils.notebook.exit("retried " + os.path.basename(marker))\n'
    ),
}
CONDITION = jobs.ConditionTaskOp


@pytest.fixture(scope="module")
def client(workspace) -> WorkspaceClient:
    client = WorkspaceClient(host=workspace.url, token=workspace.token)
    import_notebooks(client, FOLDER, NOTEBOOKS)
    return client


def notebook(key: str, name: str, params: dict | None = None, **extra) -> jobs.SubmitTask:
    return jobs.SubmitTask(
        task_key=key,
        notebook_task=jobs.NotebookTask(notebook_path=f"{FOLDER}/{name}", base_parameters=params or {}),
        new_cluster=small_cluster(),
        **extra,
    )


def condition(key: str, left: str, op: jobs.ConditionTaskOp, right: str, **extra) -> jobs.SubmitTask:
    return jobs.SubmitTask(
        task_key=key, condition_task=jobs.ConditionTask(left=left, op=op, right=right), **extra
    )


def after(key: str, outcome: str | None = None) -> jobs.TaskDependency:
    return jobs.TaskDependency(task_key=key, outcome=outcome)


def by_key(run: jobs.Run) -> dict[str, jobs.RunTask]:
    return {t.task_key: t for t in run.tasks}


def output(client: WorkspaceClient, task: jobs.RunTask) -> str | None:
    return client.jobs.get_run_output(task.run_id).notebook_output.result


# ---------------------------------------------------------------------- condition_task


def test_condition_true_runs_its_true_branch_and_excludes_the_false_one(client):
    run = client.jobs.submit(
        run_name="if-else",
        tasks=[
            notebook("produce", "produce"),
            condition(
                "has_bad_rows",
                "{{tasks.produce.values.bad_rows}}",
                CONDITION.GREATER_THAN,
                "0",
                depends_on=[after("produce")],
            ),
            notebook("quarantine", "echo", {"x": "quarantined"}, depends_on=[after("has_bad_rows", "true")]),
            notebook("publish", "echo", {"x": "published"}, depends_on=[after("has_bad_rows", "false")]),
            # downstream of the branch not taken: excluded with it
            notebook("announce", "echo", {"x": "announced"}, depends_on=[after("publish")]),
            # a join after both branches runs when none failed
            notebook(
                "join",
                "echo",
                {"x": "joined"},
                depends_on=[after("quarantine"), after("announce")],
                run_if=jobs.RunIf.NONE_FAILED,
            ),
        ],
    ).result()
    tasks = by_key(run)
    assert run.state.result_state == jobs.RunResultState.SUCCESS, run.state.state_message
    cond = tasks["has_bad_rows"]
    assert cond.condition_task.outcome == "true"
    assert cond.state.result_state == jobs.RunResultState.SUCCESS
    assert cond.cluster_instance is None  # a condition needs no compute
    assert output(client, tasks["quarantine"]) == "quarantined"
    for key in ("publish", "announce"):
        assert tasks[key].state.result_state == jobs.RunResultState.EXCLUDED, key
        assert tasks[key].status.termination_details.code == jobs.TerminationCodeCode.SKIPPED
        assert tasks[key].cluster_instance is None
    assert output(client, tasks["join"]) == "joined"


@pytest.mark.parametrize(
    "left, op, right, outcome",
    [
        ("12.0", CONDITION.EQUAL_TO, "12", "false"),  # string comparison
        ("abc", CONDITION.NOT_EQUAL, "abd", "true"),
        ("12.0", CONDITION.GREATER_THAN_OR_EQUAL, "12", "true"),  # numeric comparison
        ("10.0", CONDITION.GREATER_THAN_OR_EQUAL, "12", "false"),
        ("9", CONDITION.LESS_THAN, "10", "true"),  # numbers, not strings: "9" > "10" as text
        ("10", CONDITION.LESS_THAN_OR_EQUAL, "9.5", "false"),
        ("{{job.parameters.mode}}", CONDITION.EQUAL_TO, "full", "true"),
    ],
)
def test_condition_operators(client, left, op, right, outcome):
    created = client.jobs.create(
        name="condition-ops",
        parameters=[jobs.JobParameterDefinition(name="mode", default="incremental")],
        tasks=[jobs.Task(task_key="cond", condition_task=jobs.ConditionTask(left=left, op=op, right=right))],
    )
    try:
        run = client.jobs.run_now(created.job_id, job_parameters={"mode": "full"}).result()
        task = run.tasks[0]
        assert task.state.result_state == jobs.RunResultState.SUCCESS, task.state.state_message
        assert task.condition_task.outcome == outcome
    finally:
        client.jobs.delete(created.job_id)


def test_numeric_condition_on_text_fails_the_task(client):
    run = client.jobs.submit(
        run_name="bad-condition", tasks=[condition("cond", "many", CONDITION.GREATER_THAN, "3")]
    ).result()
    task = run.tasks[0]
    assert task.state.result_state == jobs.RunResultState.FAILED
    assert "'many'" in task.state.state_message
    assert task.condition_task.outcome is None


def test_condition_task_specs_are_checked_at_submit(client):
    with pytest.raises(InvalidParameterValue, match=r"tasks\[0\].condition_task.op"):
        client.api_client.do(
            "POST",
            "/api/2.1/jobs/runs/submit",
            body={"tasks": [{"task_key": "c", "condition_task": {"op": "LIKE", "left": "a", "right": "b"}}]},
        )
    with pytest.raises(InvalidParameterValue, match="outcome"):
        client.jobs.submit(
            run_name="outcome-on-a-notebook",
            tasks=[notebook("a", "echo"), notebook("b", "echo", depends_on=[after("a", "true")])],
        )
    with pytest.raises(InvalidParameterValue, match="without compute"):
        client.jobs.submit(
            run_name="condition-with-cluster",
            tasks=[condition("c", "1", CONDITION.EQUAL_TO, "1", new_cluster=small_cluster())],
        )


# ---------------------------------------------------------------------- run_job_task


def test_run_job_task_runs_the_job_and_mirrors_its_result(client):
    child = client.jobs.create(
        name="child-job",
        parameters=[jobs.JobParameterDefinition(name="x", default="default")],
        tasks=[
            jobs.Task(
                task_key="echo",
                notebook_task=jobs.NotebookTask(notebook_path=f"{FOLDER}/echo"),
                new_cluster=small_cluster(),
            )
        ],
    )
    try:
        run = client.jobs.submit(
            run_name="parent",
            tasks=[
                jobs.SubmitTask(
                    task_key="trigger_child",
                    run_job_task=jobs.RunJobTask(
                        job_id=child.job_id, job_parameters={"x": "from parent {{job.run_id}}"}
                    ),
                )
            ],
        ).result()
        task = run.tasks[0]
        assert task.state.result_state == jobs.RunResultState.SUCCESS, task.state.state_message
        assert task.run_job_task.job_id == child.job_id
        child_run_id = client.jobs.get_run_output(task.run_id).run_job_output.run_id
        child_run = client.jobs.get_run(child_run_id)
        assert child_run.job_id == child.job_id
        assert child_run.trigger == jobs.TriggerType.RUN_JOB_TASK
        assert child_run.trigger_info.run_id == task.run_id
        assert output(client, child_run.tasks[0]) == f"from parent {run.run_id}"
        assert [r.run_id for r in client.jobs.list_runs(job_id=child.job_id)] == [child_run_id]
    finally:
        client.jobs.delete(child.job_id)


def test_run_job_task_fails_when_the_job_run_fails(client):
    child = client.jobs.create(
        name="failing-child",
        tasks=[
            jobs.Task(
                task_key="boom",
                notebook_task=jobs.NotebookTask(
                    notebook_path=f"{FOLDER}/fail_on_zero", base_parameters={"x": "0"}
                ),
                new_cluster=small_cluster(),
            )
        ],
    )
    try:
        run = client.jobs.submit(
            run_name="parent-of-failure",
            tasks=[jobs.SubmitTask(task_key="trigger", run_job_task=jobs.RunJobTask(job_id=child.job_id))],
        ).result()
        task = run.tasks[0]
        assert run.state.result_state == jobs.RunResultState.FAILED
        assert task.state.result_state == jobs.RunResultState.FAILED
        assert "zero is not a valid input" in task.state.state_message
    finally:
        client.jobs.delete(child.job_id)


_TRUE = jobs.ConditionTask(left="1", op=CONDITION.EQUAL_TO, right="1")


def test_a_run_job_task_of_a_missing_job_is_refused(client):
    missing = [jobs.Task(task_key="trigger", run_job_task=jobs.RunJobTask(job_id=987654321))]
    field = r"tasks\[0\].run_job_task.job_id: Job 987654321 does not exist"
    with pytest.raises(InvalidParameterValue, match=field):
        client.jobs.create(name="no-such-job", tasks=missing)
    with pytest.raises(InvalidParameterValue, match=field):
        client.jobs.submit(run_name="no-such-job", tasks=[jobs.SubmitTask.from_dict(missing[0].as_dict())])
    nested = jobs.Task(
        task_key="loop",
        for_each_task=jobs.ForEachTask(inputs="[1]", task=missing[0]),
    )
    with pytest.raises(InvalidParameterValue, match=r"tasks\[0\].for_each_task.task.run_job_task.job_id"):
        client.jobs.create(name="no-such-job", tasks=[nested])
    job = client.jobs.create(
        name="reset-to-missing", tasks=[jobs.Task(task_key="noop", condition_task=_TRUE)]
    )
    try:
        with pytest.raises(InvalidParameterValue, match=field):
            client.jobs.reset(job.job_id, new_settings=jobs.JobSettings(name="reset", tasks=missing))
        # jobs/update merges the task into the job's tasks: the second one
        with pytest.raises(InvalidParameterValue, match=field.replace("[0", "[1")):
            client.jobs.update(job.job_id, new_settings=jobs.JobSettings(tasks=missing))
    finally:
        client.jobs.delete(job.job_id)


def test_a_run_job_task_whose_job_was_deleted_fails_at_run_time(client):
    child = client.jobs.create(name="deleted-child", tasks=[jobs.Task(task_key="noop", condition_task=_TRUE)])
    parent = client.jobs.create(
        name="parent-of-deleted",
        tasks=[jobs.Task(task_key="trigger", run_job_task=jobs.RunJobTask(job_id=child.job_id))],
    )
    try:
        client.jobs.delete(child.job_id)
        run = client.jobs.run_now(parent.job_id).result()
        assert run.tasks[0].state.result_state == jobs.RunResultState.FAILED
        assert f"Job {child.job_id} does not exist" in run.tasks[0].state.state_message
    finally:
        client.jobs.delete(parent.job_id)


def wait_for(predicate, what: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_cancelling_the_run_cancels_the_job_run_its_run_job_task_started(client):
    child = client.jobs.create(
        name="sleeping-child",
        tasks=[
            jobs.Task(
                task_key="sleep",
                notebook_task=jobs.NotebookTask(notebook_path=f"{FOLDER}/sleep"),
                new_cluster=small_cluster(),
            )
        ],
    )
    try:
        waiter = client.jobs.submit(
            run_name="cancel-parent",
            tasks=[jobs.SubmitTask(task_key="trigger", run_job_task=jobs.RunJobTask(job_id=child.job_id))],
        )
        runs = wait_for(
            lambda: list(client.jobs.list_runs(job_id=child.job_id, active_only=True)), "the child run"
        )
        client.jobs.cancel_run(waiter.run_id).result()
        run = client.jobs.get_run(waiter.run_id)
        assert run.tasks[0].state.result_state == jobs.RunResultState.CANCELED
        child_run = client.jobs.wait_get_run_job_terminated_or_skipped(runs[0].run_id)
        assert child_run.state.result_state == jobs.RunResultState.CANCELED
    finally:
        client.jobs.delete(child.job_id)


# ---------------------------------------------------------------------- for_each_task


def for_each(
    key: str, inputs: str, inner: jobs.Task, concurrency: int | None = None, **extra
) -> jobs.SubmitTask:
    return jobs.SubmitTask(
        task_key=key,
        for_each_task=jobs.ForEachTask(inputs=inputs, task=inner, concurrency=concurrency),
        **extra,
    )


def inner_notebook(key: str, name: str, params: dict) -> jobs.Task:
    return jobs.Task(
        task_key=key,
        notebook_task=jobs.NotebookTask(notebook_path=f"{FOLDER}/{name}", base_parameters=params),
        new_cluster=small_cluster(),
    )


def test_for_each_runs_the_nested_task_per_input(client):
    run = client.jobs.submit(
        run_name="for-each",
        tasks=[
            for_each("loop", '["a", "b", "c"]', inner_notebook("echo_input", "echo", {"x": "{{input}}"}), 2)
        ],
    ).result()
    loop = run.tasks[0]
    assert loop.state.result_state == jobs.RunResultState.SUCCESS, loop.state.state_message
    stats = loop.for_each_task.stats.task_run_stats
    assert (stats.total_iterations, stats.completed_iterations, stats.succeeded_iterations) == (3, 3, 3)
    assert (stats.failed_iterations, stats.active_iterations) == (0, 0)
    iterations = client.jobs.get_run(loop.run_id).iterations
    assert sorted(output(client, it) for it in iterations) == ["a", "b", "c"]
    assert {it.task_key for it in iterations} == {"echo_input"}


def test_for_each_over_a_task_value_with_fields(client):
    run = client.jobs.submit(
        run_name="for-each-values",
        tasks=[
            notebook("produce", "produce"),
            for_each(
                "per_region",
                "{{tasks.produce.values.regions}}",
                inner_notebook("echo_region", "echo", {"x": "{{input.name}}:{{input.rows}}"}),
                depends_on=[after("produce")],
            ),
        ],
    ).result()
    loop = by_key(run)["per_region"]
    assert loop.state.result_state == jobs.RunResultState.SUCCESS, loop.state.state_message
    iterations = client.jobs.get_run(loop.run_id).iterations
    assert [output(client, it) for it in iterations] == ["west:1", "east:2"]


def test_for_each_over_a_condition_task(client):
    inner = jobs.Task(
        task_key="is_big",
        condition_task=jobs.ConditionTask(left="{{input}}", op=CONDITION.GREATER_THAN, right="10"),
    )
    run = client.jobs.submit(
        run_name="for-each-condition", tasks=[for_each("loop", "[5, 50, 500]", inner, 2)]
    ).result()
    loop = run.tasks[0]
    assert loop.state.result_state == jobs.RunResultState.SUCCESS, loop.state.state_message
    iterations = client.jobs.get_run(loop.run_id).iterations
    assert [it.condition_task.outcome for it in iterations] == ["false", "true", "true"]
    assert all(it.cluster_instance is None for it in iterations)
    # The run page of the for-each task lists its iterations; each iteration's shows its outcome.
    page = requests.get(loop.run_page_url, timeout=10).text
    assert "3 total, 3 scheduled, 0 active, 3 completed, 3 succeeded, 0 failed" in page
    assert all(f">{it.run_id}</a>" in page for it in iterations)
    assert "Condition outcome: <b>false</b>" in requests.get(iterations[0].run_page_url, timeout=10).text


def test_a_failing_iteration_fails_the_for_each_task(client):
    run = client.jobs.submit(
        run_name="for-each-failure",
        tasks=[
            for_each(
                "loop", "[1, 0, 2]", inner_notebook("maybe_fail", "fail_on_zero", {"x": "{{input}}"}), 3
            ),
            notebook("after_loop", "echo", depends_on=[after("loop")]),
        ],
    ).result()
    tasks = by_key(run)
    loop = tasks["loop"]
    assert run.state.result_state == jobs.RunResultState.FAILED
    assert loop.state.result_state == jobs.RunResultState.FAILED
    assert "zero is not a valid input" in loop.state.state_message
    stats = loop.for_each_task.stats.task_run_stats
    assert (stats.total_iterations, stats.succeeded_iterations, stats.failed_iterations) == (3, 2, 1)
    assert tasks["after_loop"].state.result_state == jobs.RunResultState.UPSTREAM_FAILED


def test_for_each_specs_are_checked_at_submit(client):
    inner = inner_notebook("inner", "echo", {"x": "{{input}}"})
    with pytest.raises(InvalidParameterValue, match="inputs"):
        client.jobs.submit(run_name="bad-inputs", tasks=[for_each("loop", '{"not": "an array"}', inner)])
    with pytest.raises(InvalidParameterValue, match="concurrency"):
        client.jobs.submit(run_name="bad-concurrency", tasks=[for_each("loop", "[1]", inner, 1000)])
    with pytest.raises(InvalidParameterValue, match="for-each"):
        nested = jobs.Task(task_key="deeper", for_each_task=jobs.ForEachTask(inputs="[1]", task=inner))
        client.jobs.submit(run_name="nested", tasks=[for_each("loop", "[1]", nested)])


def test_an_iteration_retries_as_its_nested_task_says(client, tmp_path):
    inner = inner_notebook("flaky_iteration", "flaky", {"marker": f"{tmp_path}/{{{{input}}}}"})
    inner.max_retries = 1
    run = client.jobs.submit(
        run_name="for-each-retry", tasks=[for_each("loop", '["a", "b"]', inner, 2)]
    ).result()
    loop = run.tasks[0]
    assert loop.state.result_state == jobs.RunResultState.SUCCESS, loop.state.state_message
    stats = loop.for_each_task.stats.task_run_stats  # the latest attempt of each iteration counts
    assert (stats.total_iterations, stats.succeeded_iterations, stats.failed_iterations) == (2, 2, 0)
    iterations = client.jobs.get_run(loop.run_id).iterations
    assert [it.attempt_number for it in iterations] == [1, 1]
    assert sorted(output(client, it) for it in iterations) == ["retried a", "retried b"]
    first = client.jobs.get_run(client.jobs.get_run(iterations[0].run_id).original_attempt_run_id)
    assert first.state.result_state == jobs.RunResultState.FAILED


def test_repair_reruns_a_failed_for_each_task_with_fresh_iterations(client, tmp_path):
    inner = inner_notebook("flaky_once", "flaky", {"marker": f"{tmp_path}/{{{{input}}}}"})
    waiter = client.jobs.submit(run_name="for-each-repair", tasks=[for_each("loop", '["x", "y"]', inner, 2)])
    run = waiter.result()
    assert run.tasks[0].for_each_task.stats.task_run_stats.failed_iterations == 2
    client.jobs.repair_run(run.run_id, rerun_all_failed_tasks=True).result()
    repaired = client.jobs.get_run(run.run_id)
    assert repaired.state.result_state == jobs.RunResultState.SUCCESS
    latest = repaired.tasks[-1]
    assert latest.run_id != run.tasks[0].run_id
    iterations = client.jobs.get_run(latest.run_id).iterations
    assert sorted(output(client, it) for it in iterations) == ["retried x", "retried y"]


def test_a_for_each_task_that_times_out_cancels_its_iterations(client):
    task = for_each("loop", "[1, 2]", inner_notebook("sleep", "sleep", {}), 2, timeout_seconds=3)
    run = client.jobs.submit(run_name="for-each-timeout", tasks=[task]).result()
    loop = run.tasks[0]
    assert loop.state.result_state == jobs.RunResultState.TIMEDOUT
    iterations = wait_for(
        lambda: (
            (its := client.jobs.get_run(loop.run_id).iterations)
            and all(it.state.life_cycle_state == jobs.RunLifeCycleState.TERMINATED for it in its)
            and its
        ),
        "the iterations to end",
    )
    assert {it.state.result_state for it in iterations} == {jobs.RunResultState.CANCELED}


def test_cancelling_the_run_cancels_the_iterations(client):
    waiter = client.jobs.submit(
        run_name="cancel-for-each",
        tasks=[for_each("loop", "[1, 2, 3]", inner_notebook("sleep", "sleep", {}), 2)],
    )

    def running_iterations():
        loop = client.jobs.get_run(waiter.run_id).tasks[0]
        stats = loop.for_each_task.stats
        return loop if stats and stats.task_run_stats.active_iterations == 2 else None

    loop = wait_for(running_iterations, "two iterations running")
    assert loop.for_each_task.stats.task_run_stats.completed_iterations == 0
    client.jobs.cancel_run(waiter.run_id).result()
    loop = client.jobs.get_run(waiter.run_id).tasks[0]
    assert loop.state.result_state == jobs.RunResultState.CANCELED
    iterations = wait_for(
        lambda: (
            (its := client.jobs.get_run(loop.run_id).iterations)
            and all(it.state.life_cycle_state == jobs.RunLifeCycleState.TERMINATED for it in its)
            and its
        ),
        "the iterations to end",
    )
    assert {it.state.result_state for it in iterations} == {jobs.RunResultState.CANCELED}


# ---------------------------------------------------------------------- python_wheel_task

WHEEL_MODULE = """
import sys


def main():
    print("wheel args:", " ".join(sys.argv[1:]))
    if "--fail" in sys.argv:
        raise RuntimeError("the wheel was asked to fail")
    if "--exit" in sys.argv:
        sys.exit(3)
"""


def make_entry_point_wheel(path: Path) -> Path:
    """A pure-Python wheel ``etl_tool`` with a console script ``run`` -> ``etl_tool:main``."""
    name, version = "etl_tool", "0.1"
    wheel = path / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(f"{name}.py", WHEEL_MODULE)
        zf.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        zf.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        zf.writestr(f"{info}/entry_points.txt", "[console_scripts]\nrun = etl_tool:main\n")
        zf.writestr(f"{info}/RECORD", "")
    return wheel


@pytest.fixture(scope="module")
def wheel_path(client, tmp_path_factory) -> str:
    wheel = make_entry_point_wheel(tmp_path_factory.mktemp("wheel"))
    client.workspace.upload(
        f"{FOLDER}/{wheel.name}", wheel.read_bytes(), format=ImportFormat.AUTO, overwrite=True
    )
    return f"/Workspace{FOLDER}/{wheel.name}"


def wheel_task(wheel_path: str | None, **params) -> jobs.SubmitTask:
    return jobs.SubmitTask(
        task_key="wheel",
        python_wheel_task=jobs.PythonWheelTask(package_name="etl_tool", entry_point="run", **params),
        libraries=[Library(whl=wheel_path)] if wheel_path else None,
        new_cluster=small_cluster(),
    )


def test_python_wheel_task_runs_the_entry_point_with_its_parameters(client, wheel_path):
    run = client.jobs.submit(
        run_name="wheel", tasks=[wheel_task(wheel_path, parameters=["--date", "{{job.start_time.iso_date}}"])]
    ).result()
    task = run.tasks[0]
    assert task.state.result_state == jobs.RunResultState.SUCCESS, task.state.state_message
    out = client.jobs.get_run_output(task.run_id)
    iso = datetime.datetime.fromtimestamp(run.start_time / 1000, tz=datetime.UTC).strftime("%Y-%m-%d")
    assert f"wheel args: --date {iso}" in out.logs  # wheel tasks have stdout logs
    assert out.notebook_output is None


def test_python_wheel_from_a_volume(client, tmp_path):
    client.catalogs.create("wheels")
    client.schemas.create("jobs", "wheels")
    client.volumes.create("wheels", "jobs", "dist", VolumeType.MANAGED)
    wheel = make_entry_point_wheel(tmp_path)
    path = f"/Volumes/wheels/jobs/dist/{wheel.name}"
    client.files.upload(path, io.BytesIO(wheel.read_bytes()), overwrite=True)
    run = client.jobs.submit(
        run_name="wheel-volume", tasks=[wheel_task(path, parameters=["from-volume"])]
    ).result()
    assert run.tasks[0].state.result_state == jobs.RunResultState.SUCCESS, run.tasks[0].state.state_message
    assert "wheel args: from-volume" in client.jobs.get_run_output(run.tasks[0].run_id).logs


def test_python_wheel_named_parameters(client, wheel_path):
    run = client.jobs.submit(
        run_name="wheel-named", tasks=[wheel_task(wheel_path, named_parameters={"region": "west", "n": "2"})]
    ).result()
    assert "wheel args: --region=west --n=2" in client.jobs.get_run_output(run.tasks[0].run_id).logs


@pytest.mark.parametrize(
    "args, message",
    [(["--fail"], "RuntimeError: the wheel was asked to fail"), (["--exit"], "SystemExit: 3")],
)
def test_a_failing_entry_point_fails_the_task(client, wheel_path, args, message):
    run = client.jobs.submit(run_name="wheel-fails", tasks=[wheel_task(wheel_path, parameters=args)]).result()
    task = run.tasks[0]
    assert task.state.result_state == jobs.RunResultState.FAILED
    out = client.jobs.get_run_output(task.run_id)
    assert message in out.error
    assert "wheel args:" in out.logs


def test_a_wheel_task_without_its_library_is_accepted_and_fails_at_run_time(client):
    wheel = jobs.PythonWheelTask(package_name="etl_tool", entry_point="run")
    task = jobs.Task(task_key="wheel", python_wheel_task=wheel, new_cluster=small_cluster())
    created = client.jobs.create(name="wheel-no-library", tasks=[task])
    try:
        run = client.jobs.run_now(created.job_id).result()
        assert run.tasks[0].state.result_state == jobs.RunResultState.FAILED
        assert "etl_tool" in run.tasks[0].state.state_message
    finally:
        client.jobs.delete(created.job_id)
