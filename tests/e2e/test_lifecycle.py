"""The lifecycle DAGs through real `airflow dags test` runs on a real devstack.

Two stacks run side by side: the main one walks a model's life (first release, a worse
candidate blocked, a forced release, rollback, re-scoring, a failing notebook, bad params);
the other runs the whole lifecycle while its workspaces fail 10 % of API calls.
"""

from __future__ import annotations

import io
import json
import shutil
import threading
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from devstack import lake
from devstack import stack as devstack
from devstack.airflow_runner import ROOT, DagRunResult
from devstack.processes import free_port
from tests.conftest import RecordingAirflowRunner

pytestmark = pytest.mark.e2e

DAGS = ROOT / "dags"
SCORE_DATE = "2026-11-20"
BAD_DATA_DATE = "2026-11-25"


@dataclass
class Lifecycle:
    """A devstack plus the DAG runs made on it, kept for the tests to inspect."""

    name: str
    state_dir: Path
    stack: dict
    config: dict
    env: dict
    runs: dict[str, DagRunResult] = field(default_factory=dict)
    facts: dict = field(default_factory=dict)
    error: str | None = None

    def run(self, airflow, key: str, dag_id: str, conf: dict | None = None) -> DagRunResult:
        result = airflow.dags_test(dag_id, DAGS, conf=conf, env=self.env, timeout=900)
        self.runs[key] = result
        return result

    def mlflow(self):
        from mlflow import MlflowClient

        url = self.stack["mlflow"]["url"]
        return MlflowClient(tracking_uri=url, registry_uri=url)

    def champion(self) -> str | None:
        model = self.config["model"]
        try:
            return (
                self.mlflow()
                .get_model_version_by_alias(model["prod_model_name"], model["champion_alias"])
                .version
            )
        except Exception:
            return None

    def workspace(self, env_name: str):
        from databricks.sdk import WorkspaceClient

        ws = self.stack["workspaces"][env_name]
        return WorkspaceClient(host=ws["url"], token=ws["token"])

    def workspace_runs(self, env_name: str) -> list[dict]:
        return [r.as_dict() for r in self.workspace(env_name).jobs.list_runs()]


def _start(name: str, tmp_path_factory, fault_rate: float = 0.0) -> Lifecycle:
    state_dir = tmp_path_factory.mktemp(f"devstack-{name}")
    ports = {"mlflow": free_port(), "dev": free_port(), "staging": free_port(), "prod": free_port()}
    stack = devstack.up(state_dir, ports=ports, fault_rate=fault_rate, quiet=True)
    config = devstack.load_project_config_for(Path(stack["lake"]))
    return Lifecycle(name, state_dir, stack, config, devstack.connection_env(stack, config))


def _main_scenario(life: Lifecycle, airflow) -> None:
    model = life.config["model"]
    facts = life.facts
    # 0. Before any release there is no champion: scoring is skipped, not failed.
    life.run(airflow, "score_before_release", "mlops_batch_score", {"date": SCORE_DATE})
    life.facts["prod_runs_before_release"] = len(life.workspace_runs("prod"))
    # 1. First release: a decent ridge model becomes the first champion; its day is scored.
    life.run(airflow, "train_v1", "mlops_train", {"model_type": "ridge", "alpha": 1.0})
    life.run(airflow, "release_v1", "mlops_release", {"reason": "first release"})
    facts["champion_after_v1"] = life.champion()
    life.run(airflow, "score_1", "mlops_batch_score", {"date": SCORE_DATE})
    facts["predictions_1"] = _read_predictions(life)
    facts["endpoint_after_v1"] = _endpoint_versions(life)
    facts["serving_vs_batch_1"] = _serving_vs_batch(life)
    # 2. A much worse candidate: the gate blocks it, the champion stays.
    life.run(airflow, "train_v2", "mlops_train", {"model_type": "ridge", "alpha": 5000.0})
    life.run(airflow, "release_v2", "mlops_release", {"reason": "worse candidate"})
    facts["champion_after_blocked"] = life.champion()
    facts["endpoint_after_blocked"] = _endpoint_versions(life)
    facts["v2_status"] = (
        life.mlflow().get_model_version(model["dev_model_name"], "2").tags.get("mlops_validation_status")
    )
    # 3. Forced through with lenient rules, then rolled back.
    life.run(
        airflow,
        "release_v2_forced",
        "mlops_release",
        {"version": "2", "gate_rules": {"rmse": {"max": 1000}}, "reason": "forced for the test"},
    )
    facts["champion_after_forced"] = life.champion()
    facts["endpoint_after_forced"] = _endpoint_versions(life)
    life.run(airflow, "rollback", "mlops_rollback", {"reason": "forced release was worse"})
    facts["champion_after_rollback"] = life.champion()
    facts["endpoint_after_rollback"] = _endpoint_versions(life)
    # 4. Re-scoring the same day replaces its partition.
    life.run(airflow, "score_2", "mlops_batch_score", {"date": SCORE_DATE})
    facts["predictions_2"] = _read_predictions(life)
    # 4b. A candidate that passes a lenient gate but answers differently at serving than in
    #     validation (noise): the canary's smoke check fails, endpoint and champion stay on v1.
    broken = _register_noisy_candidate(life)
    facts["broken_version"] = broken
    life.run(
        airflow,
        "release_broken",
        "mlops_release",
        {"version": broken, "gate_rules": {"rmse": {"max": 1000}}, "reason": "a candidate that disagrees"},
    )
    facts["champion_after_broken"] = life.champion()
    facts["endpoint_after_broken"] = _endpoint_versions(life)
    # 5. Bad params never reach Databricks.
    runs_before = len(life.workspace_runs("dev"))
    life.run(airflow, "bad_params", "mlops_train", {"alpha": -1})
    facts["dev_runs_added_by_bad_params"] = len(life.workspace_runs("dev")) - runs_before
    # 6. A failing notebook: a day whose landed data has too many bad rows (landed through the
    #    workspace's Files API into the landing volume, as an upstream extract would).
    landing = life.config["environments"]["dev"]["paths"]["landing"]
    good = (ROOT / "include/data/landing/diabetes/date=2026-11-22/part-00000.csv").read_text()
    lines = good.splitlines()
    header, rows = lines[0], lines[1:]
    bad = "\n".join([header, *[",".join(["999"] * len(header.split(",")))] * 40, *rows]) + "\n"
    life.workspace("dev").files.upload(
        f"{landing}/date={BAD_DATA_DATE}/part-00000.csv", io.BytesIO(bad.encode()), overwrite=True
    )
    life.run(airflow, "train_bad_data", "mlops_train", {"data_date": BAD_DATA_DATE})
    # 7. A date with no landed data fails before any cluster starts.
    runs_before = len(life.workspace_runs("dev"))
    life.run(airflow, "train_no_data", "mlops_train", {"data_date": "2026-10-01"})
    facts["dev_runs_added_by_missing_date"] = len(life.workspace_runs("dev")) - runs_before


def _read_predictions(life: Lifecycle) -> dict:
    import pandas as pd

    predictions = life.config["environments"]["prod"]["paths"]["predictions"]
    path = lake.local_path(
        Path(life.stack["lake"]),
        life.state_dir / "metastore",
        life.config,
        f"{predictions}/date={SCORE_DATE}",
    )
    frame = pd.read_parquet(path)
    return {
        "rows": len(frame),
        "ids": frame["patient_id"].nunique(),
        "versions": sorted(set(frame["model_version"])),
    }


def _endpoint_versions(life: Lifecycle) -> dict[str, int]:
    """{prod model version: traffic %} the prod serving endpoint serves now."""
    serving = life.config["environments"]["prod"]["serving"]
    endpoint = life.workspace("prod").serving_endpoints.get(serving["endpoint_name"])
    routes = {r.served_entity_name: r.traffic_percentage for r in endpoint.config.traffic_config.routes}
    return {str(e.entity_version): routes.get(e.name, 0) for e in endpoint.config.served_entities}


def _serving_vs_batch(life: Lifecycle, rows: int = 20) -> dict:
    """The endpoint's answers and batch scoring's predictions for the same scored rows."""
    import pandas as pd

    features = life.config["model"]["features"]
    scored = ROOT / f"include/data/scoring/date={SCORE_DATE}/part-00000.csv"
    frame = pd.read_csv(scored).head(rows)
    serving = life.config["environments"]["prod"]["serving"]
    answer = life.workspace("prod").serving_endpoints.query(
        serving["endpoint_name"], dataframe_records=frame[features].to_dict(orient="records")
    )
    predictions = life.config["environments"]["prod"]["paths"]["predictions"]
    path = lake.local_path(
        Path(life.stack["lake"]),
        life.state_dir / "metastore",
        life.config,
        f"{predictions}/date={SCORE_DATE}",
    )
    batch = pd.read_parquet(path).set_index("patient_id")["prediction"]
    return {
        "served": [round(float(v), 6) for v in answer.predictions],
        "batch": [round(float(batch[i]), 6) for i in frame["patient_id"]],
    }


NOISY_MODEL = """
import numpy as np
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel


class Noisy(PythonModel):
    # A model whose answers change on every call: validation and serving never agree.
    def predict(self, context, model_input, params=None):
        return np.random.default_rng().normal(150.0, 20.0, len(model_input))


set_model(Noisy())
"""

REGISTER_NOISY = """
import sys
import mlflow
import pandas as pd

holdout = pd.read_csv(sys.argv[1])[sys.argv[3].split(",")].head(5)
mlflow.set_registry_uri("databricks-uc")
with mlflow.start_run():
    info = mlflow.pyfunc.log_model(name="model", python_model=sys.argv[2], input_example=holdout)
print(mlflow.register_model(info.model_uri, sys.argv[4]).version)
"""


def _register_noisy_candidate(life: Lifecycle) -> str:
    """A dev model version registered in Unity Catalog through the dev workspace, as training does.

    In a process of its own: MLflow's registry URI and the workspace's sign-in are global, and the
    fault scenario runs in another thread of this one.
    """
    import os
    import subprocess
    import sys

    model_file = life.state_dir / "noisy_model.py"
    model_file.write_text(NOISY_MODEL)
    ws = life.stack["workspaces"]["dev"]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "MLFLOW_"))},
        "DATABRICKS_HOST": ws["url"],
        "DATABRICKS_TOKEN": ws["token"],
        "MLFLOW_TRACKING_URI": life.stack["mlflow"]["url"],
    }
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            REGISTER_NOISY,
            str(ROOT / "include/data/holdout/diabetes_holdout.csv"),
            str(model_file),
            ",".join(life.config["model"]["features"]),
            life.config["model"]["dev_model_name"],
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def _fault_scenario(life: Lifecycle, airflow) -> None:
    life.run(airflow, "train", "mlops_train", {})
    life.run(airflow, "release", "mlops_release", {"reason": "under faults"})
    life.run(airflow, "score", "mlops_batch_score", {"date": SCORE_DATE})


@pytest.fixture(scope="module")
def lifecycles(tmp_path_factory, airflow):
    main = _start("main", tmp_path_factory)
    faulty = _start("faults", tmp_path_factory, fault_rate=0.1)
    # The two scenarios run the same DAGs at the same moment: each gets its own metadata DB,
    # as two Airflow deployments would.
    faulty_airflow = RecordingAirflowRunner(tmp_path_factory.mktemp("airflow-faults"))
    faulty_airflow.migrate()

    def guarded(life, scenario, runner):
        try:
            scenario(life, runner)
        except Exception:
            life.error = traceback.format_exc()

    threads = [
        threading.Thread(target=guarded, args=(main, _main_scenario, airflow)),
        threading.Thread(target=guarded, args=(faulty, _fault_scenario, faulty_airflow)),
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        yield {"main": main, "faults": faulty}
    finally:
        for life in (main, faulty):
            artifacts = ROOT / "test-artifacts" / f"devstack-{life.name}"
            shutil.rmtree(artifacts, ignore_errors=True)
            shutil.copytree(
                life.state_dir,
                artifacts,
                ignore=shutil.ignore_patterns("*.db*", "artifacts", "lake"),
                dirs_exist_ok=True,
            )
            devstack.down(life.state_dir, quiet=True, purge=True)


def _ok(life: Lifecycle, key: str) -> DagRunResult:
    assert life.error is None, life.error
    result = life.runs[key]
    assert result.succeeded, (
        f"{key} ({result.dag_id}) ended {result.state}.\nTask failures:\n{result.failures()[:12000]}"
        f"\n\nEnd of the output:\n{result.output[-3000:]}"
    )
    return result


def test_full_lifecycle_trains_releases_and_scores(lifecycles):
    life = lifecycles["main"]
    for key in ("train_v1", "release_v1", "score_1"):
        _ok(life, key)
    assert life.facts["champion_after_v1"] == "1"
    assert life.facts["predictions_1"] == {"rows": 250, "ids": 250, "versions": ["1"]}
    version = life.mlflow().get_model_version(life.config["model"]["dev_model_name"], "1")
    assert version.tags["mlops_dag_id"] == "mlops_train" and version.tags["mlops_source_run_id"]
    assert "Scored 250 rows of 2026-11-20" in life.runs["score_1"].output


def test_after_a_release_the_endpoint_serves_the_champion_as_batch_scoring_does(lifecycles):
    life = lifecycles["main"]
    _ok(life, "release_v1")
    # The first release creates the endpoint on the candidate, then moves the alias.
    assert life.facts["endpoint_after_v1"] == {life.facts["champion_after_v1"]: 100}
    assert "deploy_candidate" in life.runs["release_v1"].output
    compared = life.facts["serving_vs_batch_1"]
    assert len(compared["served"]) == 20
    assert compared["served"] == pytest.approx(compared["batch"], rel=1e-6)


def test_scoring_before_the_first_release_is_skipped(lifecycles):
    life = lifecycles["main"]
    result = _ok(life, "score_before_release")
    assert "No champion of prod.ml.diabetes yet, nothing to score" in result.output
    assert life.facts["prod_runs_before_release"] == 0  # no scoring job was started


def test_worse_candidate_is_blocked_and_champion_unchanged(lifecycles):
    life = lifecycles["main"]
    release = _ok(life, "release_v2")  # a blocked gate ends the run without failing it
    assert "failed the validation gate" in release.output
    assert life.facts["v2_status"] == "failed"
    assert life.facts["champion_after_blocked"] == "1"
    assert life.facts["endpoint_after_blocked"] == {"1": 100}  # the gate stops before serving


def test_a_canary_that_disagrees_leaves_endpoint_and_champion_unchanged(lifecycles):
    life = lifecycles["main"]
    release = _ok(life, "release_broken")  # ends as a blocked gate does: the run itself is fine
    assert "answers differ from the expected predictions" in release.output
    assert "blocked by the canary" in release.output
    assert life.facts["champion_after_broken"] == "1"
    assert life.facts["endpoint_after_broken"] == {"1": 100}


def test_rollback_restores_the_previous_champion(lifecycles):
    life = lifecycles["main"]
    _ok(life, "release_v2_forced")
    _ok(life, "rollback")
    assert life.facts["champion_after_forced"] == "2"
    assert life.facts["champion_after_rollback"] == "1"
    # The forced release went through the canary (v1 served beside it), then all traffic.
    assert life.facts["endpoint_after_forced"] == {"2": 100}
    assert "start_canary" in life.runs["release_v2_forced"].output
    # The rollback moves the endpoint with the alias: it serves the previous version again.
    assert life.facts["endpoint_after_rollback"] == {"1": 100}


def test_rescoring_a_date_overwrites_its_partition(lifecycles):
    life = lifecycles["main"]
    _ok(life, "score_2")
    assert life.facts["predictions_2"]["rows"] == life.facts["predictions_1"]["rows"] == 250
    assert life.facts["predictions_2"]["ids"] == 250


def test_failing_notebook_fails_its_task_with_the_notebook_error(lifecycles):
    life = lifecycles["main"]
    result = life.runs["train_bad_data"]
    assert result.state == "failed"
    assert "DataValidationError" in result.output and "40 of 393 rows" in result.output


def test_training_reads_the_landed_data_of_its_date(lifecycles):
    life = lifecycles["main"]
    version = life.mlflow().get_model_version(life.config["model"]["dev_model_name"], "1")
    landing = life.config["environments"]["dev"]["paths"]["landing"]
    # No data_date given: the newest landed date, fixed before the run and recorded as read.
    assert version.tags["mlops_data_date"] == "2026-11-22"
    assert version.tags["mlops_data_path"] == f"{landing}/date=2026-11-22"
    assert version.tags["mlops_data_files"] == "part-00000.csv"


def test_a_date_without_data_fails_before_any_cluster_starts(lifecycles):
    life = lifecycles["main"]
    result = life.runs["train_no_data"]
    assert result.state == "failed"
    landing = life.config["environments"]["dev"]["paths"]["landing"]
    assert f"No data landed for 2026-10-01: {landing}/date=2026-10-01 does not exist" in result.output
    assert life.facts["dev_runs_added_by_missing_date"] == 0


def test_bad_params_are_rejected_before_any_databricks_run(lifecycles):
    life = lifecycles["main"]
    result = life.runs["bad_params"]
    assert not result.succeeded
    assert "alpha" in result.output
    assert life.facts["dev_runs_added_by_bad_params"] == 0


def test_lifecycle_survives_api_faults_without_duplicates(lifecycles):
    """One API call in ten answered 429 or 503: retries absorb them and nothing runs twice.

    ``airflow dags test`` runs a deferred task's trigger inline and fails the task at once when
    the trigger raises, where a triggerer would fail only that try: the triggers' retries
    (``tuning.databricks_retry_limit``) are all that stands between a waiting task and a fault.
    """
    life = lifecycles["faults"]
    for key in ("train", "release", "score"):
        _ok(life, key)
    model = life.config["model"]
    assert len(life.mlflow().search_model_versions(f"name='{model['dev_model_name']}'")) == 1
    assert len(life.mlflow().search_model_versions(f"name='{model['prod_model_name']}'")) == 1
    # One job run per workspace: the workflow on dev, validation on staging, scoring on prod.
    for env_name in ("dev", "staging", "prod"):
        runs = life.workspace_runs(env_name)
        assert len(runs) == 1, (env_name, json.dumps(runs)[:2000])


# --------------------------------------------------------------------------- self-hosted MLflow

SELF_HOSTED_OVERLAY = Path(__file__).resolve().parent / "self_hosted_mlflow.yaml"
SELF_HOSTED_URL_VAR = "MLOPS_SELF_HOSTED_MLFLOW_URL"


def _self_hosted_scenario(life: Lifecycle, airflow) -> None:
    life.run(airflow, "train", "mlops_train", {})
    life.run(airflow, "release", "mlops_release", {"reason": "self-hosted registry"})
    life.run(airflow, "score", "mlops_batch_score", {"date": SCORE_DATE})
    life.facts["predictions"] = _read_predictions(life)


@pytest.fixture(scope="module")
def self_hosted(tmp_path_factory):
    """A team's own MLflow server instead of Unity Catalog: train -> release -> score.

    It runs on a devstack of its own, fault-free, started only when the two lifecycles above
    are done (module order), for three reasons: its registry road must not share model names
    and job-run counts with the fault test (which asserts exactly one of each); faults would
    make a broken road and a handled fault look alike; and on 2 CPUs it never runs a third
    Spark driver beside theirs. Its own stack also lets it run alone (``-k self_hosted``).
    The devstack's MLflow server stands in for the team's: the overlay
    tests/e2e/self_hosted_mlflow.yaml sets ``registry.uri: null`` (registry operators through
    ``mlflow_default``) and ``registry.tracking_uri`` (the notebooks), with plain model names.
    """
    import os

    # Its own Airflow metadata DB, as the team's own deployment: the Assets of the lifecycle
    # DAGs are named alike on both roads, while their URIs name the model of each.
    airflow = RecordingAirflowRunner(tmp_path_factory.mktemp("airflow-self-hosted"))
    airflow.migrate()
    life = _start("self-hosted", tmp_path_factory)
    url = life.stack["mlflow"]["url"]
    previous = os.environ.get(SELF_HOSTED_URL_VAR)
    os.environ[SELF_HOSTED_URL_VAR] = url  # the overlay's ${...}, for this process's view of it
    try:
        from include.config import load_config

        life.config = load_config(overlay=str(SELF_HOSTED_OVERLAY))
        life.env = {
            **devstack.connection_env(life.stack, life.config),
            "MLOPS_CONFIG_OVERLAY": str(SELF_HOSTED_OVERLAY),
            SELF_HOSTED_URL_VAR: url,
        }
        try:
            _self_hosted_scenario(life, airflow)
        except Exception:
            life.error = traceback.format_exc()
        yield life
    finally:
        if previous is None:
            os.environ.pop(SELF_HOSTED_URL_VAR, None)
        else:
            os.environ[SELF_HOSTED_URL_VAR] = previous
        artifacts = ROOT / "test-artifacts" / f"devstack-{life.name}"
        shutil.rmtree(artifacts, ignore_errors=True)
        shutil.copytree(
            life.state_dir,
            artifacts,
            ignore=shutil.ignore_patterns("*.db*", "artifacts", "lake"),
            dirs_exist_ok=True,
        )
        devstack.down(life.state_dir, quiet=True, purge=True)


def test_self_hosted_mlflow_registers_releases_and_scores_on_the_server(self_hosted):
    life = self_hosted
    for key in ("train", "release", "score"):
        _ok(life, key)
    model = life.config["model"]
    dev, prod = model["dev_model_name"], model["prod_model_name"]
    assert (dev, prod) == ("diabetes-dev", "diabetes")
    client = life.mlflow()
    # Only the plain configured names: nothing went to Unity Catalog (dev.ml.* / prod.ml.*).
    assert sorted(m.name for m in client.search_registered_models()) == [prod, dev]
    assert client.get_model_version_by_alias(prod, model["champion_alias"]).version == "1"
    assert client.get_model_version_by_alias(dev, model["challenger_alias"]).version == "1"
    candidate = client.get_model_version(dev, "1")
    # Registered by the notebook straight on the server: no Unity Catalog bookkeeping on the
    # version, and its run tracked there, not through a workspace (which tags its experiments).
    assert not [t for t in candidate.tags if t.startswith("devstack.uc.")], candidate.tags
    run = client.get_run(candidate.tags["mlops_source_run_id"])
    assert candidate.run_id == run.info.run_id and run.info.artifact_uri.startswith("mlflow-artifacts:")
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == f"/Shared/mlops/{model['name']}-training"
    assert "devstack.workspace" not in experiment.tags
    # The validation run too, and the gate's verdict on the version.
    assert client.get_run(candidate.tags["mlops_evaluation_run_id"]).data.metrics["candidate_rmse"] > 0
    assert candidate.tags["mlops_validation_status"] == "passed"
    assert life.facts["predictions"] == {"rows": 250, "ids": 250, "versions": ["1"]}
    assert f"Scored 250 rows of {SCORE_DATE} with {prod} v1" in life.runs["score"].output
