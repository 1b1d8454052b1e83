"""One caller, one name: what a caller creates shows the name SCIM Me gives it (a user's userName,
a service principal's application id) as its creator, owner or run-as identity, through
databricks-sdk signed in with the workspace's PAT (the admin) and with a service principal's
OAuth M2M secret."""

from __future__ import annotations

import uuid

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.service import jobs

from devstack.services import start_workspace

TOKEN = "dapi-creators"
LTS = "15.4.x-scala2.12"
NODE = "Standard_DS3_v2"


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    root = tmp_path_factory.mktemp("creators")
    service = start_workspace(
        "creators", root / "ws", token=TOKEN, extra_args=["--metastore-dir", str(root / "metastore")]
    )
    yield service
    service.stop()


@pytest.fixture(scope="module")
def admin(service) -> WorkspaceClient:
    return WorkspaceClient(host=service.url, token=TOKEN)


@pytest.fixture(scope="module")
def sp(service, admin) -> WorkspaceClient:
    """A service principal of the workspace, signed in with its OAuth secret (M2M)."""
    principal = admin.service_principals.create(display_name="creators-sp")
    secret = admin.service_principal_secrets_proxy.create(principal.id)
    return WorkspaceClient(
        host=service.url,
        client_id=principal.application_id,
        client_secret=secret.secret,
        auth_type="oauth-m2m",
    )


def _condition_task(key: str) -> jobs.Task:
    # Needs no compute: the run ends at once.
    return jobs.Task(
        task_key=key,
        condition_task=jobs.ConditionTask(op=jobs.ConditionTaskOp.EQUAL_TO, left="1", right="1"),
    )


@pytest.mark.parametrize("caller", ["admin", "sp"])
def test_jobs_and_runs_show_their_caller(request, caller):
    w: WorkspaceClient = request.getfixturevalue(caller)
    me = w.current_user.me().user_name
    if caller == "sp":
        assert me == w.config.client_id  # a service principal is named by its application id
    else:
        assert me == "admin@devstack.local"

    job = w.jobs.create(name=f"made-by-{caller}", tasks=[_condition_task("gate")])
    got = w.jobs.get(job.job_id)
    assert (got.creator_user_name, got.run_as_user_name) == (me, me)
    assert [j.creator_user_name for j in w.jobs.list(name=f"made-by-{caller}")] == [me]
    owners = [
        (e.user_name or e.service_principal_name)
        for e in w.jobs.get_permissions(str(job.job_id)).access_control_list
        if any(p.permission_level.value == "IS_OWNER" for p in e.all_permissions)
    ]
    assert owners == [me]

    run = w.jobs.run_now(job.job_id).result()
    assert run.creator_user_name == me
    submitted = w.jobs.submit(run_name=f"submitted-by-{caller}", tasks=[_condition_task("gate")]).result()
    assert submitted.creator_user_name == me
    assert w.jobs.get_run(submitted.run_id).creator_user_name == me


def test_a_job_run_shows_the_jobs_creator_whoever_triggers_it(admin, sp):
    app_id = sp.config.client_id
    job = sp.jobs.create(name="sp-job", tasks=[_condition_task("gate")])

    run = admin.jobs.run_now(job.job_id).result()
    assert run.creator_user_name == app_id

    # A run-job task of the admin's job starts a run of the service principal's job: its creator.
    caller = admin.jobs.create(
        name="calls-sp-job",
        tasks=[jobs.Task(task_key="call", run_job_task=jobs.RunJobTask(job_id=job.job_id))],
    )
    outer = admin.jobs.run_now(caller.job_id).result()
    assert outer.creator_user_name == "admin@devstack.local"
    child = admin.jobs.get_run(admin.jobs.get_run_output(outer.tasks[0].run_id).run_job_output.run_id)
    assert child.creator_user_name == app_id


def test_run_as_of_the_settings_is_the_jobs_run_as_identity(admin, sp):
    app_id = sp.config.client_id
    job = admin.jobs.create(
        name="runs-as-sp",
        tasks=[_condition_task("gate")],
        run_as=jobs.JobRunAs(service_principal_name=app_id),
    )

    got = admin.jobs.get(job.job_id)

    assert (got.creator_user_name, got.run_as_user_name) == ("admin@devstack.local", app_id)


@pytest.mark.parametrize("caller", ["admin", "sp"])
def test_clusters_secret_scopes_and_catalogs_show_their_caller(request, caller):
    w: WorkspaceClient = request.getfixturevalue(caller)
    me = w.current_user.me().user_name
    suffix = uuid.uuid4().hex[:6]

    cluster = w.clusters.create(
        cluster_name=f"by-{caller}", spark_version=LTS, node_type_id=NODE, num_workers=0
    )
    try:
        info = w.clusters.get(cluster.cluster_id)
        assert info.creator_user_name == me and info.default_tags["Creator"] == me
    finally:
        w.clusters.permanent_delete(cluster.cluster_id)

    scope = f"scope-{caller}-{suffix}"
    w.secrets.create_scope(scope)
    assert [(a.principal, a.permission.value) for a in w.secrets.list_acls(scope)] == [(me, "MANAGE")]

    catalog = w.catalogs.create(name=f"cat_{caller}_{suffix}")
    assert catalog.owner == me and catalog.created_by == me
    schema = w.schemas.create(name="s", catalog_name=catalog.name)
    assert schema.owner == me


def test_startup_objects_belong_to_the_admin(admin):
    me = admin.current_user.me().user_name

    assert admin.clusters.get("0000-000000-devstack").creator_user_name == me
