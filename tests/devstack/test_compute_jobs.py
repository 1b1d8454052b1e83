"""Job clusters checked when Databricks checks them: jobs/create, jobs/reset and runs/submit refuse
a bad cluster spec with INVALID_PARAMETER_VALUE; a job cluster gets its policy's and pool's values."""

from __future__ import annotations

import json

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import InvalidParameterValue
from databricks.sdk.service.compute import AutoScale, ClusterSpec
from databricks.sdk.service.jobs import JobCluster, NotebookTask, RunResultState, SubmitTask, Task

from devstack.services import start_workspace
from tests.devstack.jobs_support import import_notebooks

LTS = "15.4.x-scala2.12"


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    service = start_workspace("compute-jobs", tmp_path_factory.mktemp("ws-compute-jobs"), token="j")
    yield service
    service.stop()


@pytest.fixture(scope="module")
def client(service) -> WorkspaceClient:
    client = WorkspaceClient(host=service.url, token="j")
    import_notebooks(client, "/Shared/compute")
    return client


def _task(cluster: ClusterSpec) -> SubmitTask:
    return SubmitTask(
        task_key="t", new_cluster=cluster, notebook_task=NotebookTask(notebook_path="/Shared/compute/ok")
    )


def test_runs_submit_refuses_a_node_type_azure_does_not_have(client):
    before = len(list(client.jobs.list_runs()))
    with pytest.raises(
        InvalidParameterValue, match=r"Node type i3.xlarge is not supported \(tasks\[0\].new_cluster"
    ):
        client.jobs.submit(
            run_name="aws-node", tasks=[_task(ClusterSpec(spark_version=LTS, node_type_id="i3.xlarge"))]
        )
    with pytest.raises(InvalidParameterValue, match="Invalid spark version 7.3.x-scala2.12"):
        client.jobs.submit(
            run_name="old",
            tasks=[_task(ClusterSpec(spark_version="7.3.x-scala2.12", node_type_id="Standard_DS3_v2"))],
        )
    assert len(list(client.jobs.list_runs())) == before  # no run was created


def test_a_single_user_job_cluster_needs_no_user_name(client):
    # The job's run-as identity is the cluster's user (clusters/create asks for single_user_name).
    from databricks.sdk.service.compute import DataSecurityMode

    spec = ClusterSpec(
        spark_version="15.4.x-cpu-ml-scala2.12",
        node_type_id="Standard_DS3_v2",
        num_workers=2,
        data_security_mode=DataSecurityMode.SINGLE_USER,
    )
    run = client.jobs.submit_and_wait(run_name="single-user", tasks=[_task(spec)])
    assert run.state.result_state == RunResultState.SUCCESS


def test_the_cluster_of_a_for_each_task_is_checked_too(client):
    from databricks.sdk.service.jobs import ForEachTask

    inner = Task(
        task_key="inner",
        new_cluster=ClusterSpec(spark_version=LTS, node_type_id="Standard_Z9"),
        notebook_task=NotebookTask(notebook_path="/Shared/compute/ok"),
    )
    with pytest.raises(
        InvalidParameterValue, match=r"Node type Standard_Z9 is not supported \(tasks\[0\].for_each_task"
    ):
        client.jobs.submit(
            run_name="loop",
            tasks=[SubmitTask(task_key="loop", for_each_task=ForEachTask(inputs="[1, 2]", task=inner))],
        )


def test_jobs_create_and_reset_refuse_a_bad_job_cluster(client):
    bad = JobCluster(
        job_cluster_key="c",
        new_cluster=ClusterSpec(
            spark_version=LTS,
            node_type_id="Standard_DS3_v2",
            autoscale=AutoScale(min_workers=3, max_workers=1),
        ),
    )
    task = Task(
        task_key="t", job_cluster_key="c", notebook_task=NotebookTask(notebook_path="/Shared/compute/ok")
    )
    with pytest.raises(InvalidParameterValue, match=r"job_clusters\[0\].new_cluster.autoscale"):
        client.jobs.create(name="bad-autoscale", job_clusters=[bad], tasks=[task])

    good = JobCluster(
        job_cluster_key="c", new_cluster=ClusterSpec(spark_version=LTS, node_type_id="Standard_DS3_v2")
    )
    job = client.jobs.create(name="good", job_clusters=[good], tasks=[task])
    from databricks.sdk.service.jobs import JobSettings

    with pytest.raises(InvalidParameterValue, match="Node type Standard_M416ms_v2 is not supported"):
        client.jobs.reset(
            job.job_id,
            JobSettings(
                name="good",
                job_clusters=[
                    JobCluster(
                        job_cluster_key="c",
                        new_cluster=ClusterSpec(spark_version=LTS, node_type_id="Standard_M416ms_v2"),
                    )
                ],
                tasks=[task],
            ),
        )
    with pytest.raises(InvalidParameterValue, match="Invalid spark version 12.2.x-scala2.12"):
        client.jobs.update(
            job.job_id,
            new_settings=JobSettings(
                job_clusters=[
                    JobCluster(
                        job_cluster_key="c",
                        new_cluster=ClusterSpec(
                            spark_version="12.2.x-scala2.12", node_type_id="Standard_DS3_v2"
                        ),
                    )
                ]
            ),
        )
    assert client.jobs.get(job.job_id).settings.job_clusters[0].new_cluster.node_type_id == "Standard_DS3_v2"


def test_a_job_cluster_gets_its_policy_values_and_its_pool_node_type(client):
    policy = client.cluster_policies.create(
        name="jobs",
        definition=json.dumps(
            {
                "spark_env_vars.TEAM": {"type": "fixed", "value": "ml"},
                "num_workers": {"type": "range", "maxValue": 2, "defaultValue": 1},
            }
        ),
    )
    pool = client.instance_pools.create(
        instance_pool_name="jobs", node_type_id="Standard_E4ds_v4", min_idle_instances=1
    )
    with pytest.raises(
        InvalidParameterValue, match="Validation failed for num_workers, the value must be at most 2"
    ):
        client.jobs.submit(
            run_name="too-many",
            tasks=[
                _task(
                    ClusterSpec(
                        spark_version=LTS,
                        node_type_id="Standard_DS3_v2",
                        num_workers=5,
                        policy_id=policy.policy_id,
                    )
                )
            ],
        )
    run = client.jobs.submit_and_wait(
        run_name="by-policy",
        tasks=[
            SubmitTask(
                task_key="t",
                new_cluster=ClusterSpec(
                    spark_version=LTS,
                    instance_pool_id=pool.instance_pool_id,
                    policy_id=policy.policy_id,
                    apply_policy_default_values=True,
                ),
                notebook_task=NotebookTask(
                    notebook_path="/Shared/compute/ok", base_parameters={"x": "from-pool"}
                ),
            )
        ],
    )
    assert run.state.result_state == RunResultState.SUCCESS
    cluster = client.clusters.get(run.tasks[0].cluster_instance.cluster_id)
    assert (cluster.node_type_id, cluster.num_workers, cluster.spark_env_vars) == (
        "Standard_E4ds_v4",
        1,
        {"TEAM": "ml"},
    )
