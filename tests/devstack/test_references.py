"""Dynamic value references through databricks-sdk: every documented reference resolves in task
parameters, the deprecated names keep working, and a reference that does not exist in a known
namespace is refused at create/submit while other text in braces stays as it is."""

from __future__ import annotations

import datetime
import json

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import InvalidParameterValue
from databricks.sdk.service import jobs

from tests.devstack.jobs_support import import_notebooks, small_cluster

FOLDER = "/Shared/references"
NOTEBOOKS = {
    "dump": "import json\ndbutils.notebook.exit(json.dumps(dbutils.widgets.getAll()))\n",
    "produce": 'dbutils.jobs.taskValues.set(key="answer", value=42)\ndbutils.jobs.taskValues.set(key="ok", value=True)\n',
    "fail": 'raise ValueError("upstream broke")\n',
}
TIME_PARTS = (
    "iso_date",
    "iso_datetime",
    "timestamp_ms",
    "year",
    "month",
    "day",
    "hour",
    "minute",
    "second",
    "is_weekday",
    "day_of_week",
)


@pytest.fixture(scope="module")
def client(workspace) -> WorkspaceClient:
    client = WorkspaceClient(host=workspace.url, token=workspace.token)
    import_notebooks(client, FOLDER, NOTEBOOKS)
    return client


def task(key: str, notebook: str, params: dict | None = None, **extra) -> jobs.Task:
    return jobs.Task(
        task_key=key,
        notebook_task=jobs.NotebookTask(notebook_path=f"{FOLDER}/{notebook}", base_parameters=params or {}),
        new_cluster=small_cluster(),
        **extra,
    )


def dumped(client: WorkspaceClient, run_task: jobs.RunTask) -> dict[str, str]:
    return json.loads(client.jobs.get_run_output(run_task.run_id).notebook_output.result)


def expected_time(ms: int) -> dict[str, str]:
    t = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return {
        "iso_date": t.date().isoformat(),
        "iso_datetime": t.replace(microsecond=0, tzinfo=None).isoformat(),
        "timestamp_ms": str(ms),
        "year": str(t.year),
        "month": str(t.month),
        "day": str(t.day),
        "hour": str(t.hour),
        "minute": str(t.minute),
        "second": str(t.second),
        "is_weekday": "true" if t.weekday() < 5 else "false",
        "day_of_week": str(t.isoweekday()),
    }


def test_every_documented_reference_resolves(client, workspace):
    params = {
        "job_id": "{{job.id}}",
        "job_name": "{{job.name}}",
        "job_run_id": "{{job.run_id}}",
        "repair_count": "{{job.repair_count}}",
        "trigger_type": "{{job.trigger.type}}",
        "trigger_date": "{{job.trigger.time.iso_date}}",
        # no run here is started by a file arrival trigger or a backfill: empty values
        "file_location": "[{{job.trigger.file_arrival.location}}]",
        "backfill": "[{{backfill.iso_datetime}}]",
        "param": "{{job.parameters.region}}",
        "quoted_param": "{{job.parameters.`run-mode`}}",
        "task_name": "{{task.name}}",
        "task_run_id": "{{task.run_id}}",
        "execution_count": "{{task.execution_count}}",
        "notebook_path": "{{task.notebook_path}}",
        "up_run_id": "{{tasks.produce.run_id}}",
        "up_state": "{{tasks.produce.result_state}}",
        "up_error": "[{{tasks.produce.error_code}}]",
        "up_count": "{{tasks.produce.execution_count}}",
        "up_path": "{{tasks.produce.notebook_path}}",
        "value": "{{tasks.produce.values.answer}}",
        "bool_value": "{{tasks.produce.values.ok}}",
        "workspace_id": "{{workspace.id}}",
        "workspace_url": "{{workspace.url}}",
        # the deprecated names
        "legacy_run_id": "{{run_id}}",
        "legacy_job_id": "{{job_id}}",
        "legacy_parent_run_id": "{{parent_run_id}}",
        "legacy_start_date": "{{start_date}}",
        # not a known namespace, and a missing brace: left as they are
        "literal": "{{my.value}}",
        "broken": "{{job.id}",
        **{f"start_{part}": f"{{{{job.start_time.{part}}}}}" for part in TIME_PARTS},
    }
    created = client.jobs.create(
        name="references",
        parameters=[
            jobs.JobParameterDefinition(name="region", default="west"),
            jobs.JobParameterDefinition(name="run-mode", default="full"),
        ],
        tasks=[
            task("produce", "produce"),
            task("dump", "dump", params, depends_on=[jobs.TaskDependency("produce")]),
        ],
    )
    try:
        run = client.jobs.run_now(created.job_id, job_parameters={"region": "east"}).result()
        tasks = {t.task_key: t for t in run.tasks}
        got = dumped(client, tasks["dump"])
        # job parameters reach a notebook task as widgets of their own too
        assert (got.pop("region"), got.pop("run-mode")) == ("east", "full")
        produce = tasks["produce"]
        start = expected_time(run.start_time)
        assert got == {
            "job_id": str(created.job_id),
            "job_name": "references",
            "job_run_id": str(run.run_id),
            "repair_count": "0",
            "trigger_type": "onetime",
            "trigger_date": start["iso_date"],
            "file_location": "[]",
            "backfill": "[]",
            "param": "east",
            "quoted_param": "full",
            "task_name": "dump",
            "task_run_id": str(tasks["dump"].run_id),
            "execution_count": "1",
            "notebook_path": f"{FOLDER}/dump",
            "up_run_id": str(produce.run_id),
            "up_state": "success",
            "up_error": "[]",
            "up_count": "1",
            "up_path": f"{FOLDER}/produce",
            "value": "42",
            "bool_value": "true",
            "workspace_id": str(client.get_workspace_id()),
            "workspace_url": workspace.url,
            "legacy_run_id": str(tasks["dump"].run_id),
            "legacy_job_id": str(created.job_id),
            "legacy_parent_run_id": str(run.run_id),
            "legacy_start_date": start["iso_date"],
            "literal": "{{my.value}}",
            "broken": "{{job.id}",
            **{f"start_{part}": value for part, value in start.items()},
        }
        # runs/get shows what the task really ran with
        resolved = client.jobs.get_run(run.run_id, include_resolved_values=True)
        dump = next(t for t in resolved.tasks if t.task_key == "dump")
        assert dump.resolved_values.notebook_task.base_parameters["value"] == "42"
    finally:
        client.jobs.delete(created.job_id)


def test_a_failed_upstream_and_a_repair_show_in_references(client):
    created = client.jobs.create(
        name="references-after-failure",
        tasks=[
            task("broken", "fail"),
            task(
                "report",
                "dump",
                {
                    "state": "{{tasks.broken.result_state}}",
                    "error": "{{tasks.broken.error_code}}",
                    "repairs": "{{job.repair_count}}",
                },
                depends_on=[jobs.TaskDependency("broken")],
                run_if=jobs.RunIf.ALL_DONE,
            ),
        ],
    )
    try:
        run = client.jobs.run_now(created.job_id).result()
        report = next(t for t in run.tasks if t.task_key == "report")
        assert dumped(client, report) == {"state": "failed", "error": "RUN_EXECUTION_ERROR", "repairs": "0"}
        client.jobs.repair_run(run.run_id, rerun_tasks=["report"]).result()
        repaired = client.jobs.get_run(run.run_id)
        latest = [t for t in repaired.tasks if t.task_key == "report"][-1]
        assert dumped(client, latest)["repairs"] == "1"
    finally:
        client.jobs.delete(created.job_id)


def test_a_task_value_nobody_set_fails_the_task_at_run_time(client):
    run = client.jobs.submit(
        run_name="missing-value",
        tasks=[
            jobs.SubmitTask(
                task_key="produce",
                notebook_task=jobs.NotebookTask(notebook_path=f"{FOLDER}/produce"),
                new_cluster=small_cluster(),
            ),
            jobs.SubmitTask(
                task_key="reader",
                notebook_task=jobs.NotebookTask(
                    notebook_path=f"{FOLDER}/dump", base_parameters={"v": "{{tasks.produce.values.nothing}}"}
                ),
                new_cluster=small_cluster(),
                depends_on=[jobs.TaskDependency("produce")],
            ),
        ],
    ).result()
    reader = next(t for t in run.tasks if t.task_key == "reader")
    assert reader.state.result_state == jobs.RunResultState.FAILED
    assert "nothing" in reader.state.state_message


@pytest.mark.parametrize(
    "reference",
    [
        "{{job.naem}}",
        "{{job.start_time.week}}",
        "{{task.foo}}",
        "{{tasks.nosuch.run_id}}",
        "{{tasks.first.outcome}}",
        "{{workspace.name}}",
        "{{input}}",  # only inside a for-each task
    ],
)
def test_an_unknown_reference_in_a_known_namespace_is_refused(client, reference):
    tasks = [task("first", "dump"), task("second", "dump", {"x": f"value {reference}"})]
    with pytest.raises(InvalidParameterValue, match=r"tasks\[1\].notebook_task.base_parameters.x"):
        client.jobs.create(name="bad-reference", tasks=tasks)
    submit = [jobs.SubmitTask.from_dict(t.as_dict()) for t in tasks]
    with pytest.raises(InvalidParameterValue, match="not a valid dynamic value reference"):
        client.jobs.submit(run_name="bad-reference", tasks=submit)


def test_an_unknown_reference_in_a_job_parameter_default_is_refused(client):
    with pytest.raises(InvalidParameterValue, match=r"parameters\[0\].default"):
        client.jobs.create(
            name="bad-default",
            parameters=[jobs.JobParameterDefinition(name="day", default="{{job.start_time.weekday}}")],
            tasks=[task("t", "dump")],
        )


def test_a_reference_to_a_job_parameter_the_job_does_not_define_is_refused(client):
    params = [jobs.JobParameterDefinition(name="region", default="west")]
    typo = task("t", "dump", {"x": "{{job.parameters.regoin}}"})
    with pytest.raises(
        InvalidParameterValue, match=r"tasks\[0\].notebook_task.base_parameters.x: .*'regoin'"
    ):
        client.jobs.create(name="undefined-param", parameters=params, tasks=[typo])
    created = client.jobs.create(
        name="defined-param", parameters=params, tasks=[task("t", "dump", {"x": "{{job.parameters.region}}"})]
    )
    try:
        with pytest.raises(InvalidParameterValue, match="defines no parameter 'regoin'"):
            client.jobs.update(created.job_id, new_settings=jobs.JobSettings(tasks=[typo]))
        # removing the parameter a task references is refused as well
        with pytest.raises(InvalidParameterValue, match="defines no parameter 'region'"):
            client.jobs.update(created.job_id, fields_to_remove=["parameters"])
        assert client.jobs.get(created.job_id).settings.tasks[0].notebook_task.base_parameters == {
            "x": "{{job.parameters.region}}"
        }
    finally:
        client.jobs.delete(created.job_id)
    # a one-time run (runs/submit) has no job parameters at all
    with pytest.raises(InvalidParameterValue, match="defines no parameter 'region'"):
        client.jobs.submit(
            run_name="no-params",
            tasks=[
                jobs.SubmitTask.from_dict(task("t", "dump", {"x": "{{job.parameters.region}}"}).as_dict())
            ],
        )
