"""A native stack (`make up` on free ports) and a headless Chromium for the browser tests.

Chromium comes from Debian (/usr/bin/chromium, installed by `make test`); Playwright only
drives it and never downloads a browser. On a failing test the page's screenshot and the
Airflow logs are kept under test-artifacts/ui/. Tests without a browser (test_scheduler_recovery.py)
use the stack alone; it also loads tests/ui/dags as a second DAG bundle.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from devstack import airflow_stack
from devstack.processes import free_port
from include.config import CONFIG_DIR

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "ui"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
USER, PASSWORD = "admin", "ui-test-password"
UI_DAGS = Path(__file__).resolve().parent / "dags"
LOCAL_BUNDLE = "airflow.dag_processing.bundles.local.LocalDagBundle"


class AirflowApi:
    """The Airflow REST API as the logged-in user: for polling what the UI started."""

    def __init__(self, url: str):
        self.url = url
        self._token = None

    def _request(self, path: str, body: dict | None = None) -> dict:
        if self._token is None and path != "/auth/token":
            self._token = self._request("/auth/token", {"username": USER, "password": PASSWORD})[
                "access_token"
            ]
        headers = {"Content-Type": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, headers=headers)
        with urllib.request.urlopen(req, timeout=15) as resp:
            return json.load(resp)

    def runs(self, dag_id: str) -> list[dict]:
        return self._request(f"/api/v2/dags/{dag_id}/dagRuns?order_by=run_after&limit=100")["dag_runs"]

    def run(self, dag_id: str, run_id: str) -> dict:
        return self._request(f"/api/v2/dags/{dag_id}/dagRuns/{urllib.request.quote(run_id)}")

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        tis = self._request(f"/api/v2/dags/{dag_id}/dagRuns/{urllib.request.quote(run_id)}/taskInstances")[
            "task_instances"
        ]
        return {ti["task_id"]: ti["state"] for ti in tis}

    def task(self, dag_id: str, run_id: str, task_id: str) -> dict:
        return self._request(
            f"/api/v2/dags/{dag_id}/dagRuns/{urllib.request.quote(run_id)}/taskInstances/{task_id}"
        )

    def trigger(self, dag_id: str, run_id: str, conf: dict) -> dict:
        body = {"dag_run_id": run_id, "logical_date": None, "conf": conf}
        return self._request(f"/api/v2/dags/{dag_id}/dagRuns", body)

    def clear_task(self, dag_id: str, run_id: str, task_id: str) -> dict:
        """Clear one task instance of a run (whatever its state), as a person does in the UI."""
        body = {"dry_run": False, "only_failed": False, "dag_run_id": run_id, "task_ids": [task_id]}
        return self._request(f"/api/v2/dags/{dag_id}/clearTaskInstances", body)

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int) -> str:
        """The log of one try, one line per event (empty while the try has not started)."""
        path = (
            f"/api/v2/dags/{dag_id}/dagRuns/{urllib.request.quote(run_id)}/taskInstances/{task_id}"
            f"/logs/{try_number}?full_content=true"
        )
        try:
            content = self._request(path).get("content") or []
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return ""
            raise
        return "\n".join(line.get("event", "") if isinstance(line, dict) else str(line) for line in content)

    def wait_for(self, what: str, check, timeout: float, interval: float = 2.0):
        """Poll ``check()`` until it returns something truthy; fail with ``what`` and the last value."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = check()
            if last:
                return last
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")

    def wait_for_run_state(self, dag_id: str, run_id: str, timeout: float = 300) -> str:
        def finished():
            state = self.run(dag_id, run_id)["state"]
            return state if state in ("success", "failed") else None

        state = self.wait_for(f"{dag_id} run {run_id} to finish", finished, timeout)
        assert state == "success", (
            f"{dag_id} run {run_id} ended {state}; tasks: {self.task_states(dag_id, run_id)}"
        )
        return state


def _overlay_with_approval(tmp: Path) -> Path:
    """The devstack overlay plus require_approval, so the asset-triggered release waits for a person."""
    overlay = yaml.safe_load((CONFIG_DIR / "devstack.yaml").read_text())
    overlay.setdefault("gate", {})["require_approval"] = True
    path = tmp / "devstack-approval.yaml"
    path.write_text(yaml.safe_dump(overlay))
    return path


def _our_processes(marker: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if marker in line and "ps -eo" not in line]


@pytest.fixture(scope="session")
def native_stack(tmp_path_factory):
    """`python -m devstack up --with-airflow` on free ports, in a state dir of its own."""
    state_dir = tmp_path_factory.mktemp("native-stack")
    ports = {"mlflow": free_port(), "dev": free_port(), "staging": free_port(), "prod": free_port()}
    record = airflow_stack.up(
        state_dir,
        port=free_port(),
        ports=ports,
        password=PASSWORD,
        quiet=True,
        extra_env={
            "MLOPS_CONFIG_OVERLAY": str(_overlay_with_approval(state_dir)),
            # tests/ui's own DAGs next to the project's (test_scheduler_recovery.py).
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(
                [
                    {"name": "dags-folder", "classpath": LOCAL_BUNDLE, "kwargs": {}},
                    {"name": "ui-tests", "classpath": LOCAL_BUNDLE, "kwargs": {"path": str(UI_DAGS)}},
                ]
            ),
            # A lost worker is noticed in about half a minute rather than five.
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
        },
    )
    stack = json.loads((state_dir / "stack.json").read_text())
    yield {"record": record, "stack": stack, "state_dir": state_dir, "api": AirflowApi(record["url"])}
    if ARTIFACTS.exists() and any(ARTIFACTS.glob("*.png")):
        shutil.copytree(state_dir / "airflow" / "logs", ARTIFACTS / "airflow-logs", dirs_exist_ok=True)
    airflow_stack.down(state_dir, purge=True, quiet=True)
    stragglers = _our_processes(str(state_dir))
    assert not stragglers, "processes left behind by the native stack:\n" + "\n".join(stragglers)


@pytest.fixture(scope="session")
def browser(native_stack):
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is missing: `make test` installs it (apt-get install -y chromium)")
    pytest.importorskip("playwright", reason="playwright is missing: `make test` installs requirements.lock")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def page(browser, native_stack, request):
    """A logged-in page; its screenshot goes to test-artifacts/ui/ when the test fails."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(30_000)
    page = context.new_page()
    url = native_stack["record"]["url"]
    page.goto(url + "/")
    page.fill("input[name=username]", USER)
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(url + "/")
    yield page
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for i, open_page in enumerate(context.pages):
            open_page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-{i}.png"), full_page=True)
    context.close()
