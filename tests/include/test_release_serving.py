"""The release's serving decisions without a workspace: settings, the smoke sample, the verdict."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pandas as pd
import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from include.config import ConfigError, load_config
from include.serving_config import serving_settings

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "plugins"))
sys.path.insert(0, str(ROOT / "include" / "notebooks"))

from lifecycle.evaluation import smoke_sample  # noqa: E402
from mlops.release import release_verdict  # noqa: E402

GUARDED = ["start_canary", "deploy_candidate", "smoke_check", "promote_endpoint", "promote"]


def verdict(states: dict, previous: str | None = "1") -> str:
    return release_verdict(
        states,
        promoted_task="promote",
        revert_task="revert_endpoint",
        guarded_tasks=GUARDED,
        candidate="2",
        previous_champion=previous,
        endpoint_name="diabetes",
        model_name="prod.ml.diabetes",
    )


def test_prod_serving_settings_come_from_the_config():
    settings = serving_settings(load_config())
    assert settings["endpoint_name"] == "diabetes" and settings["model_name"] == "prod.ml.diabetes"
    assert settings["traffic_percentage"] == 10 and settings["max_error_rate"] == 0.0


def test_no_serving_without_unity_catalog_or_without_the_block():
    config = load_config()
    self_hosted = copy.deepcopy(config)
    self_hosted["registry"]["uri"] = None
    self_hosted["model"]["prod_model_name"] = "diabetes"
    assert serving_settings(self_hosted) is None
    del config["environments"]["prod"]["serving"]
    assert serving_settings(config) is None


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("traffic_percentage", 100, "canary.traffic_percentage is 100: use a whole number from 1 to 99"),
        ("max_error_rate", 5, "canary.max_error_rate is 5"),
        ("smoke_rows", 0, "canary.smoke_rows is 0: use a positive number"),
    ],
)
def test_bad_canary_settings_are_refused_naming_the_key(key, value, problem):
    config = load_config()
    config["environments"]["prod"]["serving"]["canary"][key] = value
    with pytest.raises(ConfigError, match=problem):
        serving_settings(config)


def test_smoke_sample_is_bounded_json_ready_and_aligned():
    holdout = pd.DataFrame({"age": [30.0, 40.0, 50.0], "bmi": [20.5, 25.0, 31.0], "target": [1, 2, 3]})
    sample = smoke_sample(holdout, ["age", "bmi"], [10.0, 20.0, 30.0], 2)
    assert sample == {
        "smoke_rows": [{"age": 30.0, "bmi": 20.5}, {"age": 40.0, "bmi": 25.0}],
        "smoke_predictions": [10.0, 20.0],
    }
    assert json.loads(json.dumps(sample)) == sample  # travels in the notebook's exit value
    assert smoke_sample(holdout, ["age"], [1.0, 2.0, 3.0], 0) == {"smoke_rows": [], "smoke_predictions": []}


def test_a_promoted_release_says_so():
    assert "v2 is the champion" in verdict({"promote": "success", "revert_endpoint": "skipped"})


def test_a_reverted_canary_ends_as_a_blocked_gate_naming_the_cause():
    states = {
        "smoke_check": "failed",
        "promote_endpoint": "upstream_failed",
        "promote": "upstream_failed",
        "revert_endpoint": "success",
    }
    with pytest.raises(AirflowSkipException, match=r"blocked by the canary \(smoke_check failed\).*v1 again"):
        verdict(states)


def test_a_failure_the_revert_did_not_repair_fails_the_run():
    with pytest.raises(AirflowFailException, match="failed at revert_endpoint"):
        verdict({"smoke_check": "failed", "revert_endpoint": "failed"})
    # First release: no champion to go back to.
    with pytest.raises(AirflowFailException, match="no champion existed to go back to"):
        verdict({"smoke_check": "failed", "revert_endpoint": "skipped"}, previous=None)
    # A failure before serving (validation) is not the canary's to excuse.
    with pytest.raises(AirflowFailException, match="failed at validate_candidate"):
        verdict({"validate_candidate": "failed", "revert_endpoint": "skipped"})


def test_a_blocked_gate_releases_nothing():
    with pytest.raises(AirflowSkipException, match="Nothing released"):
        verdict({"validation_gate": "skipped", "promote": "skipped", "revert_endpoint": "skipped"})
