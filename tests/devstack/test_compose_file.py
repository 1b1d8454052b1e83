"""docker-compose.yaml cannot run here (no Docker engine): check what can be checked."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
SERVICES = COMPOSE["services"]
AIRFLOW = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")
# Run once and exit; the services that need them wait for service_completed_successfully.
ONE_SHOTS = ("airflow-init", "devstack-init")


def _interpolate_defaults(text: str) -> str:
    """What compose makes of ${VAR:-default} with no .env file."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", text)


def test_every_service_has_a_healthcheck_and_loopback_ports():
    for name, service in SERVICES.items():
        if name in ONE_SHOTS:
            assert service["restart"] == "no", name
            continue
        assert "healthcheck" in service, name
        assert service["healthcheck"]["test"], name
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)


def test_one_shots_gate_every_airflow_component():
    for name in AIRFLOW:
        depends = SERVICES[name]["depends_on"]
        for one_shot in ONE_SHOTS:
            assert depends[one_shot]["condition"] == "service_completed_successfully", (name, one_shot)
        assert depends["postgres"]["condition"] == "service_healthy", name
    # devstack-init registers the principals in Entra and in every workspace: all must answer first.
    depends = SERVICES["devstack-init"]["depends_on"]
    assert depends.keys() == {"entra", *(f"workspace-{n}" for n in ("dev", "staging", "prod"))}
    assert {d["condition"] for d in depends.values()} == {"service_healthy"}


def test_airflow_runs_on_an_image_built_from_the_official_one():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM apache/airflow:3\.3\.\d+", dockerfile, re.M)
    assert "requirements.lock" in dockerfile
    for name in (*AIRFLOW, "airflow-init"):
        service = SERVICES[name]
        assert service["build"]["dockerfile"] == "Dockerfile", name
        assert "_PIP_ADDITIONAL_REQUIREMENTS" not in service["environment"], name
        assert service["environment"]["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor", name
        mounts = {m.split(":")[1] for m in service["volumes"]}
        assert {"/opt/airflow/dags", "/opt/airflow/plugins", "/opt/airflow/include"} <= mounts, name
    commands = {SERVICES[name]["command"] for name in AIRFLOW}
    assert commands == {"api-server", "scheduler", "dag-processor", "triggerer"}


def test_airflow_connections_are_the_ones_devstack_up_writes_for_these_services():
    from devstack.compose import compose_connection_env

    env = SERVICES["airflow-scheduler"]["environment"]
    expected = compose_connection_env()
    assert {k: env.get(k) for k in expected} == expected
    # ...and no other connection sneaks in beside them.
    assert {k for k in env if k.startswith("AIRFLOW_CONN_")} == {
        k for k in expected if k.startswith("AIRFLOW_CONN_")
    }


def test_connection_ids_match_the_ones_the_dags_use():
    from include.config import load_config

    config = load_config(overlay="")
    used = {env["databricks_conn_id"] for env in config["environments"].values()}
    used.add(config["registry"]["mlflow_conn_id"])
    env = SERVICES["airflow-apiserver"]["environment"]
    defined = {k.removeprefix("AIRFLOW_CONN_").lower() for k in env if k.startswith("AIRFLOW_CONN_")}
    assert defined == used


def test_airflow_signs_in_as_the_service_principals_that_init_registers():
    from devstack import compose

    env = SERVICES["airflow-scheduler"]["environment"]
    init_env = SERVICES["devstack-init"]["environment"]
    for name in ("dev", "staging", "prod"):
        conn = json.loads(_interpolate_defaults(env[f"AIRFLOW_CONN_DATABRICKS_{name.upper()}"]))
        # Production's shape: a service principal with OAuth M2M, the port riding in the host
        # (the provider fetches its token from https://{host}/oidc/v1/token).
        assert conn["extra"] == {"service_principal_oauth": True} and "schema" not in conn
        assert conn["host"] == f"workspace-{name}:8000"
        assert "--port 8000" in SERVICES[f"workspace-{name}"]["command"]
        # The one-shot registers exactly the client id and OAuth secret Airflow signs in with.
        for variable, used in (
            (compose.sp_client_id(name), conn["login"]),
            (compose.sp_oauth_secret(name), conn["password"]),
        ):
            assert _interpolate_defaults(init_env[variable.name]) == used == variable.default, variable
        assert compose.sp_entra_secret(name).name in init_env
        # ...and logs in as the workspace's admin with the token the workspace was started with.
        token = _interpolate_defaults(init_env[compose.token(name).name])
        assert f"--token {token}" in _interpolate_defaults(SERVICES[f"workspace-{name}"]["command"])
    assert init_env[compose.TENANT_ID.name] == str(compose.TENANT_ID)
    command = SERVICES["devstack-init"]["command"]
    assert command.startswith("python -m devstack.compose init")
    for flag in ("--lake /lake", "--tls-dir /tls", "--entra-dir /entra", "--entra-url https://entra:8400"):
        assert flag in command
    assert {"lake:/lake", "tls:/tls", "entra:/entra"} <= set(SERVICES["devstack-init"]["volumes"])


def test_workspaces_speak_tls_and_trust_the_entra_stand_in():
    from devstack import compose

    entra = SERVICES["entra"]
    assert f"--tenant-id {compose.TENANT_ID}" in entra["command"]
    assert "--port 8400" in entra["command"] and "--tls-dir /tls --tls-name entra" in entra["command"]
    assert {"entra:/entra", "tls:/tls"} <= set(entra["volumes"])
    assert "https://localhost:8400/health" in entra["healthcheck"]["test"]
    for name in ("dev", "staging", "prod"):
        service = SERVICES[f"workspace-{name}"]
        # Certificate from the CA on the tls volume, for the name Airflow calls; Entra tokens of
        # the stand-in's tenant; the same flags `devstack up` gives its workspaces.
        assert compose.workspace_signin_args(name) in service["command"]
        assert f"--tls-name workspace-{name}" in service["command"]
        assert "tls:/tls:ro" in service["volumes"]
        assert service["depends_on"]["entra"]["condition"] == "service_healthy"
        # The health check goes over TLS, trusting the devstack CA only.
        test = service["healthcheck"]["test"]
        assert "https://localhost:8000/api/2.0/clusters/list" in test
        assert test[test.index("--cacert") + 1] == "/tls/ca.pem"


def test_airflow_trusts_the_ca_bundle_on_the_tls_volume():
    from devstack import compose

    for name in (*AIRFLOW, "airflow-init"):
        env = SERVICES[name]["environment"]
        assert env["REQUESTS_CA_BUNDLE"] == env["SSL_CERT_FILE"] == compose.CA_BUNDLE, name
        assert "tls:/tls:ro" in SERVICES[name]["volumes"], name
    assert compose.CA_BUNDLE.startswith("/tls/")
    assert "tls" in COMPOSE["volumes"]


def test_workspaces_share_one_metastore_and_the_configs_storage_accounts():
    from devstack import lake
    from devstack.compose import workspace_storage_args

    args = workspace_storage_args()
    accounts = lake.storage_accounts(lake.base_config())
    assert accounts and all(f"--storage-account {a}=/lake/{a}" in args for a in accounts)
    for name in ("dev", "staging", "prod"):
        command = SERVICES[f"workspace-{name}"]["command"]
        assert args in command and command.count("--metastore-dir") == 1
        assert "--metastore-dir /lake/metastore" in command


def test_login_is_the_simple_auth_manager_with_a_named_local_default():
    env = SERVICES["airflow-apiserver"]["environment"]
    assert env["AIRFLOW__CORE__AUTH_MANAGER"].endswith("SimpleAuthManager")
    assert _interpolate_defaults(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"]) == "admin:admin"
    passwords = env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]
    init = SERVICES["airflow-init"]
    assert passwords in "\n".join(init["command"])
    assert _interpolate_defaults(init["environment"]["AIRFLOW_ADMIN_PASSWORD"]) == "admin"
    # Secrets come from variables: nothing but ${VAR:-local default} in the file.
    for key in ("AIRFLOW__API__SECRET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET"):
        assert re.fullmatch(r"\$\{\w+:-local-dev-only-[\w-]+\}", env[key]), key
    readme = (ROOT / "README.md").read_text()
    assert "admin / admin" in readme and "AIRFLOW_ADMIN_PASSWORD" in readme


def test_mlflow_accepts_its_service_name_as_host():
    command = SERVICES["mlflow"]["command"]
    allowed = re.search(r"--allowed-hosts (\S+)", command).group(1).split(",")
    assert {"mlflow", "mlflow:5000"} <= set(allowed)
    for name in ("dev", "staging", "prod"):
        assert "--mlflow-tracking-uri http://mlflow:5000" in SERVICES[f"workspace-{name}"]["command"]


def test_one_workspace_per_environment_of_the_config():
    from include.config import load_config

    environments = set(load_config(overlay="")["environments"])
    workspaces = {n.removeprefix("workspace-") for n in SERVICES if n.startswith("workspace-")}
    assert workspaces == environments
    for name in environments:
        command = SERVICES[f"workspace-{name}"]["command"]
        assert f"--name {name}" in command and "--mlflow-tracking-uri http://mlflow:5000" in command
        # Spark in the workspace and the lake path in Airflow's config are the same volume.
        assert "lake:/lake" in SERVICES[f"workspace-{name}"]["volumes"]
    assert "lake:/lake" in SERVICES["devstack-init"]["volumes"]
    assert "openjdk" in (ROOT / "devstack" / "Dockerfile").read_text()


def test_published_ports_match_the_native_devstack():
    from devstack.airflow_stack import DEFAULT_PORT
    from devstack.stack import DEFAULT_PORTS

    for name, port in {**DEFAULT_PORTS, "airflow": DEFAULT_PORT}.items():
        service = SERVICES[
            {"mlflow": "mlflow", "airflow": "airflow-apiserver"}.get(name, f"workspace-{name}")
        ]
        published = re.match(r"127\.0\.0\.1:\$\{\w+:-(\d+)\}:", service["ports"][0]).group(1)
        assert int(published) == port, name
        if name in ("dev", "staging", "prod"):
            # Run links in the Airflow UI must open on the host, at the published port.
            assert (
                f"--public-url http://127.0.0.1:${{DEVSTACK_PORT_{name.upper()}:-{port}}}"
                in service["command"]
            )


def test_every_variable_of_the_file_is_a_documented_local_default():
    text = (ROOT / "docker-compose.yaml").read_text()
    used = set(re.findall(r"(?<!\$)\$\{(\w+):-", text))
    # ($${X} is the container shell's variable, not compose's.)
    assert not re.findall(r"(?<!\$)\$\{\w+\}", text), "every variable needs a local default"
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### docker compose") : readme.index("### The lifecycle in the UI")]
    documented = set()
    for base, envs in re.findall(r"`(\w+?)_?((?:DEV\|STAGING\|PROD)?)`", section):
        documented |= {f"{base}_{e}" for e in envs.split("|")} if envs else {base}
    assert used <= documented, used - documented
