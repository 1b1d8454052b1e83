"""The lifecycle as a person drives it: in a real browser, against real Airflow processes.

The stack is `make up`'s (api-server, scheduler, dag-processor, triggerer, the devstack), with
approval required, so the chain is: trigger mlops_train from its form -> its Asset starts
mlops_release, which waits for a person -> approve in the UI -> the champion Asset starts
mlops_batch_score -> its Databricks run link opens the emulator's run page.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

import pytest

pytestmark = pytest.mark.e2e

TRAIN, RELEASE, SCORE = "mlops_train", "mlops_release", "mlops_batch_score"


def _open_trigger_form(page, url: str):
    page.goto(f"{url}/dags/{TRAIN}")
    page.get_by_role("button", name="Trigger").first.click()
    dialog = page.get_by_role("dialog")
    dialog.locator("input[name=element_alpha]").wait_for()
    return dialog


def _set_conf_json(page, dialog, text: str) -> None:
    """Replace the trigger form's Configuration JSON (a Monaco editor) with ``text``."""
    dialog.get_by_text("Advanced Options").click()
    dialog.locator(".monaco-editor").first.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    # insert_text, not type: typing would trigger the editor's bracket auto-closing.
    page.keyboard.insert_text(text)


def _manual_runs(api, dag_id: str) -> list[str]:
    return [r["dag_run_id"] for r in api.runs(dag_id) if r["run_type"] == "manual"]


def _champion(client, model):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(model["prod_model_name"], model["champion_alias"])
    except MlflowException:
        return None


def _approve_in_ui(page, api, url: str, run_id: str, expected_text: str) -> int:
    """Approve the release in the Required Action tab; return how many approvals it took.

    Airflow 3.3 can lose an approval given within seconds of the task pausing: the scheduler
    then handles the first try's exit after the resume and starts a new try, which asks again.
    A person would approve again, and so does this.
    """
    for approvals in range(1, 4):
        task = api.wait_for(
            "approve_release to await input",
            lambda: (t := api.task(RELEASE, run_id, "approve_release"))["state"] == "awaiting_input" and t,
            timeout=300,
        )
        page.goto(f"{url}/dags/{RELEASE}/runs/{quote(run_id)}/tasks/approve_release")
        page.get_by_role("link", name=re.compile("Required Action")).click()
        page.get_by_text(expected_text).first.wait_for()
        page.get_by_role("button", name="Approve").click()

        def settled(try_number=task["try_number"]):
            if api.run(RELEASE, run_id)["state"] in ("success", "failed"):
                return "finished"
            again = api.task(RELEASE, run_id, "approve_release")
            return again["try_number"] > try_number and again["state"] == "awaiting_input" and "asked again"

        if api.wait_for("the approved release to finish", settled, timeout=240) == "finished":
            return approvals
    raise AssertionError(f"{RELEASE} run {run_id} kept asking for approval after 3 approvals")


def test_out_of_range_alpha_is_refused_and_starts_no_run(page, native_stack):
    url, api = native_stack["record"]["url"], native_stack["api"]
    before = _manual_runs(api, TRAIN)
    dialog = _open_trigger_form(page, url)

    # The number field never holds a value below the Param's minimum: it snaps back on blur.
    alpha = dialog.locator("input[name=element_alpha]")
    alpha.fill("-1")
    alpha.blur()
    assert float(alpha.input_value()) >= 0

    # The raw configuration JSON can say -1: the trigger is refused with the schema's reason.
    _set_conf_json(
        page,
        dialog,
        '{"model_type": "ridge", "alpha": -1, "max_depth": 4, "n_estimators": 100, "data_date": null}',
    )
    dialog.get_by_role("button", name="Trigger").click()
    error = dialog.get_by_text(re.compile(r"-1 is less than the minimum of 0"))
    error.wait_for()
    assert "alpha" in dialog.inner_text()
    assert page.get_by_role("dialog").is_visible(), "the form closed as if a run had started"
    assert _manual_runs(api, TRAIN) == before


def test_wrong_typed_max_depth_is_refused_and_starts_no_run(page, native_stack):
    url, api = native_stack["record"]["url"], native_stack["api"]
    before = _manual_runs(api, TRAIN)
    dialog = _open_trigger_form(page, url)

    max_depth = dialog.locator("input[name=element_max_depth]")
    max_depth.fill("2.5")  # the Param is an integer
    max_depth.blur()
    dialog.get_by_role("button", name="Trigger").click()
    dialog.get_by_text("Failed validating 'type'").first.wait_for()
    assert "2.5" in dialog.inner_text()
    assert _manual_runs(api, TRAIN) == before


def test_train_approve_release_score_and_follow_the_databricks_link(page, native_stack):
    import mlflow

    url, api = native_stack["record"]["url"], native_stack["api"]
    client = mlflow.MlflowClient(native_stack["stack"]["mlflow"]["url"])
    from include.config import load_config

    model = load_config(overlay="")["model"]

    # 1. Train from the form with a changed hyperparameter.
    dialog = _open_trigger_form(page, url)
    alpha = dialog.locator("input[name=element_alpha]")
    alpha.fill("0.25")
    alpha.blur()
    dialog.get_by_role("button", name="Trigger").click()
    page.wait_for_url(re.compile(rf"/dags/{TRAIN}/runs/manual__"))
    train_run = unquote(page.url.rsplit("/runs/", 1)[1].split("/")[0])
    assert api.run(TRAIN, train_run)["conf"]["alpha"] == 0.25
    api.wait_for_run_state(TRAIN, train_run, timeout=300)
    page.reload()
    page.get_by_text("Success").first.wait_for()

    challenger = client.get_model_version_by_alias(model["dev_model_name"], model["challenger_alias"])
    assert float(client.get_run(challenger.run_id).data.params["alpha"]) == 0.25

    # 2. The challenger Asset started mlops_release; it waits for approval in the UI.
    release_run = api.wait_for(
        "the asset-triggered mlops_release run",
        lambda: next(
            (r["dag_run_id"] for r in api.runs(RELEASE) if r["run_type"] == "asset_triggered"), None
        ),
        timeout=120,
    )
    assert _champion(client, model) is None, "the champion moved before anyone approved"
    approvals = _approve_in_ui(page, api, url, release_run, f"Candidate version {challenger.version}")
    assert api.run(RELEASE, release_run)["state"] == "success", api.task_states(RELEASE, release_run)
    if approvals > 1:
        print(f"approve_release asked again after an approval {approvals - 1} time(s) (Airflow race)")

    champion = _champion(client, model)
    assert champion is not None and champion.run_id == challenger.run_id, (
        f"the champion of {model['prod_model_name']} is not the approved candidate "
        f"{model['dev_model_name']} v{challenger.version}: {champion}"
    )

    # 3. The champion Asset started batch scoring.
    score_run = api.wait_for(
        "the asset-triggered mlops_batch_score run",
        lambda: next((r["dag_run_id"] for r in api.runs(SCORE) if r["run_type"] == "asset_triggered"), None),
        timeout=120,
    )
    api.wait_for_run_state(SCORE, score_run, timeout=300)

    # 4. The task's Databricks link opens the emulator's run page with the notebook output.
    page.goto(f"{url}/dags/{SCORE}/runs/{quote(score_run)}/tasks/score")
    page.get_by_role("link", name="Details").click()
    link = page.get_by_role("link", name="See Databricks Job Run")
    prod_port = native_stack["stack"]["workspaces"]["prod"]["port"]
    assert f"127.0.0.1:{prod_port}/" in link.get_attribute("href")
    with page.context.expect_page() as opened:
        link.click()
    run_page = opened.value
    run_page.wait_for_load_state()
    text = run_page.locator("body").inner_text()
    assert "Notebook output" in text and "SUCCESS" in text
    assert re.search(rf'"model_version": "{champion.version}"', text), text[:2000]
    rows = re.search(r'"rows_in": (\d+), "rows_out": (\d+)', text)
    assert rows and rows.group(1) == rows.group(2) and int(rows.group(1)) > 0, text[:2000]
