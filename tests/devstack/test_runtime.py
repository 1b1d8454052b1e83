"""The cluster driver runtime, end to end: real driver processes running real notebooks.

The workspace the drivers call back (workspace/export and list, secrets, task values) is a real
emulated workspace (app.py's Workspace) served in-process on 127.0.0.1. Spark has its own test
module (test_runtime_spark.py).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.service.workspace import ImportFormat, Language

from devstack.workspace.app import Workspace
from devstack.workspace.context import WorkspaceContext
from devstack.workspace.http.server import serve
from devstack.workspace.runtime import DriverProcess, DriverStartError
from devstack.workspace.runtime.fs import to_local
from devstack.workspace.store import Store

NOTEBOOKS = Path(__file__).parent / "runtime_notebooks"
TOKEN = "dapi-runtime-test"
WORKSPACE_DIR = "/Shared/rt"
HEADER = "# Databricks notebook source\n"


class RuntimeWorkspace:
    """An emulated workspace served in-process, with the fixture notebooks under /Shared/rt."""

    def __init__(self, data_dir: Path) -> None:
        ctx = WorkspaceContext(
            name="runtime",
            host="127.0.0.1",
            port=0,
            data_dir=data_dir,
            token=TOKEN,
            store=Store(data_dir / "workspace.db"),
        )
        self.workspace = Workspace(ctx)
        self.server = serve(self.workspace)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{ctx.port}"
        self.client = WorkspaceClient(host=self.url, token=TOKEN)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.workspace.close()

    def _import(self, path: str, content: str, fmt: ImportFormat, language: Language | None = None) -> None:
        self.client.workspace.mkdirs(path.rsplit("/", 1)[0])
        self.client.workspace.import_(
            path,
            content=base64.b64encode(content.encode()).decode(),
            format=fmt,
            language=language,
            overwrite=True,
        )

    def add_notebook(self, name: str, code: str) -> None:
        """A Python notebook /Shared/rt/<name> (the header is added)."""
        self._import(f"{WORKSPACE_DIR}/{name}", HEADER + code, ImportFormat.SOURCE, Language.PYTHON)

    def add_file(self, path: str, content: str) -> None:
        """A workspace file (not a notebook) at ``path``."""
        self._import(path, content, ImportFormat.RAW)

    def add_fixture_notebooks(self) -> None:
        """Import every fixture under /Shared/rt as workspace/import would take it: notebooks
        without their extension, plain modules as workspace files."""
        for path in sorted(NOTEBOOKS.rglob("*")):
            if path.suffix not in (".py", ".ipynb") or "__pycache__" in path.parts:
                continue
            text = path.read_text()
            rel = path.relative_to(NOTEBOOKS)
            if path.suffix == ".ipynb":
                target = f"{WORKSPACE_DIR}/{rel.with_suffix('').as_posix()}"
                self._import(target, text, ImportFormat.JUPYTER)
            elif text.startswith(HEADER.strip()):
                target = f"{WORKSPACE_DIR}/{rel.with_suffix('').as_posix()}"
                self._import(target, text, ImportFormat.SOURCE, Language.PYTHON)
            else:
                self.add_file(f"{WORKSPACE_DIR}/{rel.as_posix()}", text)

    def add_secrets(self, secrets: dict[str, dict[str, str]]) -> None:
        for scope, values in secrets.items():
            self.client.secrets.create_scope(scope)
            for key, value in values.items():
                self.client.secrets.put_secret(scope, key, string_value=value)

    def new_job_run(self) -> int:
        """A job run that exists (its one task cannot start: its cluster does not exist)."""
        body = {
            "run_name": "task values",
            "tasks": [
                {
                    "task_key": "t",
                    "existing_cluster_id": "no-such-cluster",
                    "notebook_task": {"notebook_path": f"{WORKSPACE_DIR}/empty"},
                }
            ],
        }
        return self.client.api_client.do("POST", "/api/2.2/jobs/runs/submit", body=body)["run_id"]

    def task_value(self, job_run_id: int, task_key: str, key: str):
        query = {"job_run_id": job_run_id, "task_key": task_key, "key": key}
        return self.client.api_client.do("GET", "/api/2.0/devstack/task-values/get", query=query)["value"]


class FaultProxy:
    """Forwards every call to the workspace, but answers the next ``faults[path]`` calls of a path
    with 503 TEMPORARILY_UNAVAILABLE and Retry-After, as a throttled workspace does."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.faults: dict[str, int] = {}
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):  # noqa: N802
                proxy._forward(self)

            do_POST = do_GET  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _forward(self, handler: BaseHTTPRequestHandler) -> None:
        path = handler.path.split("?")[0]
        with self.lock:
            fault = self.faults.get(path, 0) > 0
            if fault:
                self.faults[path] -= 1
        if fault:
            status, headers = 503, {"Retry-After": "0.1"}
            data = json.dumps({"error_code": "TEMPORARILY_UNAVAILABLE", "message": "fault"}).encode()
        else:
            length = int(handler.headers.get("Content-Length") or 0)
            request = urllib.request.Request(
                self.target + handler.path,
                data=handler.rfile.read(length) if length else None,
                method=handler.command,
                headers={k: v for k, v in handler.headers.items() if k.lower() != "host"},
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as resp:
                    status, headers, data = resp.status, {}, resp.read()
            except urllib.error.HTTPError as exc:
                status, headers, data = exc.code, {}, exc.read()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(data)


_counter = iter(range(1, 1_000_000))


def task(notebook: str | None = None, **overrides) -> dict:
    """A notebook task on a workspace notebook under /Shared/rt (defaults as the control plane sends)."""
    number = next(_counter)
    base = {
        "exec_id": f"exec-{number}-{os.getpid()}",
        "kind": "notebook",
        "source": "WORKSPACE",
        "notebook_path": f"{WORKSPACE_DIR}/{notebook}" if notebook else None,
        "git_root": None,
        "python_file": None,
        "parameters": [],
        "base_parameters": {},
        "job_id": None,
        "run_id": 1000 + number,
        "job_run_id": None,
        "task_key": "task",
        "env": {},
    }
    base.update(overrides)
    return base


def run(driver, task_dict: dict, timeout: float = 60) -> dict:
    """Execute ``task_dict`` on ``driver`` and wait for its result."""
    done = threading.Event()
    results = []

    def on_done(result):
        results.append(result)
        done.set()

    driver.execute(task_dict, on_done)
    assert done.wait(timeout), f"execution {task_dict['exec_id']} did not finish within {timeout}s"
    return results[0]


class Pending:
    """An execution started in the background; ``result()`` waits for it."""

    def __init__(self, driver, task_dict: dict):
        self.task = task_dict
        self._done = threading.Event()
        self.results: list[dict] = []
        driver.execute(task_dict, self._on_done)

    def _on_done(self, result):
        self.results.append(result)
        self._done.set()

    def result(self, timeout: float = 60) -> dict:
        assert self._done.wait(timeout), f"execution {self.task['exec_id']} did not finish within {timeout}s"
        time.sleep(0.05)  # would reveal a second, forbidden on_done call
        assert len(self.results) == 1, f"on_done was called {len(self.results)} times"
        return self.results[0]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def wait_until(predicate, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    ws = RuntimeWorkspace(tmp_path_factory.mktemp("runtime-workspace"))
    ws.add_fixture_notebooks()
    ws.add_secrets({"db": {"password": "s3cr3t-Pa55", "user": "svc-mlops"}, "mlflow": {"token": "t0k3n-xyz"}})
    yield ws
    ws.stop()


@pytest.fixture(scope="module")
def job_run_id(workspace) -> int:
    return workspace.new_job_run()


def new_driver(
    tmp_path: Path, workspace: RuntimeWorkspace, name: str = "c", url: str | None = None, **kwargs
) -> DriverProcess:
    driver = DriverProcess(
        f"cluster-{name}",
        cluster_dir=tmp_path / name,
        data_dir=tmp_path / "data",
        workspace_url=url or workspace.url,
        token=TOKEN,
        **kwargs,
    )
    driver.start()
    return driver


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runtime-data")


@pytest.fixture(scope="module")
def driver(tmp_path_factory, workspace, data_dir):
    """One driver shared by the tests that do not kill it (as tasks share a job cluster)."""
    driver = DriverProcess(
        "cluster-shared",
        cluster_dir=tmp_path_factory.mktemp("cluster-shared"),
        data_dir=data_dir,
        workspace_url=workspace.url,
        token=TOKEN,
        env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:5999", "CLUSTER_LEVEL": "yes"},
    )
    driver.start()
    yield driver
    driver.kill()


# --------------------------------------------------------------------------- notebooks


def test_widgets_take_base_parameters_over_defaults_and_exit_returns_value(driver):
    result = run(driver, task("widgets", base_parameters={"model": "wine", "threshold": "0.8"}))

    assert result["result_state"] == "SUCCESS", (result["error"], result["error_trace"])
    values = json.loads(result["notebook_result"])
    assert values["model"] == "wine"  # passed
    assert values["env"] == "dev"  # dropdown default
    assert values["threshold"] == "0.8"  # getArgument
    assert values["all"] == {"model": "wine", "env": "dev", "threshold": "0.8"}
    assert "scoring wine in dev" in result["logs"]
    # The cell after exit() would have raised: exit stopped the notebook.
    assert result["error"] is None


def test_unknown_widget_fails_naming_the_widget(driver):
    result = run(driver, task("unknown_widget"))

    assert result["result_state"] == "FAILED"
    assert result["error"].startswith("InputWidgetNotDefined")
    assert "not_declared" in result["error"]


def test_missing_workspace_notebook_fails_naming_the_path(driver):
    result = run(driver, task("does/not/exist"))

    assert result["result_state"] == "FAILED"
    assert "/Shared/rt/does/not/exist" in result["error"]


def test_failure_trace_names_the_notebook_cell(driver):
    result = run(driver, task("failing"))

    assert result["result_state"] == "FAILED"
    assert result["error"] == "ValueError: bad input: only 3 rows"
    assert "<notebook /Shared/rt/failing, cell 2>" in result["error_trace"]
    # The cell's source line is shown, and the driver's own frames are not.
    assert "raise ValueError" in result["error_trace"]
    assert "executor.py" not in result["error_trace"]
    assert "before the failure" in result["logs"]


def test_run_magic_inlines_notebooks_recursively_and_skips_pip(driver):
    result = run(driver, task("uses_run"))

    assert result["result_state"] == "SUCCESS", (result["error"], result["error_trace"])
    assert result["notebook_result"] == "42 helpers-from-run"
    assert "skipped %pip cell" in result["logs"]


def test_run_magic_cycle_fails_showing_the_cycle(driver):
    result = run(driver, task("cycle_a"))

    assert result["result_state"] == "FAILED"
    assert "/Shared/rt/cycle_a -> /Shared/rt/cycle_b -> /Shared/rt/cycle_a" in result["error"]


def test_scala_cell_fails_naming_the_cell(driver):
    result = run(driver, task("scala"))

    assert result["result_state"] == "FAILED"
    assert "Cell 2 of notebook /Shared/rt/scala is a %scala cell" in result["error"]
    assert "python cell runs" in result["logs"]


def test_git_source_runs_ipynb_with_run_magic(driver):
    result = run(
        driver,
        task(
            source="GIT",
            git_root=str(NOTEBOOKS),
            notebook_path="greeting",
            base_parameters={"who": "airflow"},
        ),
    )

    assert result["result_state"] == "SUCCESS", (result["error"], result["error_trace"])
    assert result["notebook_result"] == "hello airflow from helpers-from-run"
    assert "hello airflow" in result["logs"]


def test_git_source_accepts_path_with_extension(driver):
    result = run(driver, task(source="GIT", git_root=str(NOTEBOOKS), notebook_path="lib/helpers.py"))

    assert result["result_state"] == "SUCCESS", (result["error"], result["error_trace"])


def test_notebook_run_returns_child_exit_value(driver):
    result = run(driver, task("parent"))

    assert result["result_state"] == "SUCCESS", (result["error"], result["error_trace"])
    assert result["notebook_result"] == "child said 30"


def test_notebook_run_fails_on_timeout(driver):
    started = time.monotonic()
    result = run(driver, task("parent_of_slow"))

    assert result["result_state"] == "FAILED"
    assert "/Shared/rt/sleep timed out after 1 seconds" in result["error"]
    assert time.monotonic() - started < 10


def test_exit_value_is_capped_at_5_mb(driver, workspace):
    workspace.add_notebook("big_exit", "dbutils.notebook.exit('x' * (6 * 1024 * 1024))\n")
    result = run(driver, task("big_exit"))

    assert result["result_state"] == "SUCCESS"
    assert result["truncated"] is True
    assert len(result["notebook_result"]) == 5 * 1024 * 1024


# --------------------------------------------------------------------------- dbutils services


def test_secrets_are_readable_and_redacted_from_output(driver):
    result = run(driver, task("read_secrets"))

    assert result["result_state"] == "SUCCESS", (result["error"], result["error_trace"])
    assert result["notebook_result"] == "password,user"
    assert "s3cr3t-Pa55" not in result["logs"]
    assert "password=[REDACTED]" in result["logs"]
    assert "scopes=['db', 'mlflow']" in result["logs"]


def test_missing_secret_fails_naming_scope_and_key(driver, workspace):
    workspace.add_notebook("missing_secret", "dbutils.secrets.get('db', 'nope')\n")
    result = run(driver, task("missing_secret"))

    assert result["result_state"] == "FAILED"
    assert "scope: db and key: nope" in result["error"]


def test_task_values_flow_between_tasks_of_a_job_run(driver, workspace, job_run_id):
    setter = run(driver, task("task_values_set", job_run_id=job_run_id, task_key="train"))
    getter = run(driver, task("task_values_get", job_run_id=job_run_id, task_key="gate"))

    assert setter["result_state"] == "SUCCESS", setter
    assert workspace.task_value(job_run_id, "train", "best_run") == {"run_id": "abc123", "rmse": 0.42}
    assert json.loads(getter["notebook_result"]) == {
        "best": {"run_id": "abc123", "rmse": 0.42},
        "fallback": "fallback",
    }


def test_task_values_outside_a_job_run_return_debug_value(driver):
    result = run(driver, task("task_values_get", job_run_id=None))

    assert json.loads(result["notebook_result"])["best"] == {"run_id": "debug"}


def test_task_value_that_is_not_json_fails_clearly(driver, job_run_id):
    result = run(driver, task("task_values_bad", job_run_id=job_run_id, task_key="train"))

    assert result["result_state"] == "FAILED"
    assert "Task value 'model' must be JSON-serializable" in result["error"]


def test_fs_maps_dbfs_and_volumes_under_the_data_dir(driver, data_dir):
    result = run(driver, task("fs"))

    assert result["result_state"] == "SUCCESS", (result["error"], result["error_trace"])
    out = json.loads(result["notebook_result"])
    assert out["listing"] == [["copy/", 0]]
    assert out["head"] == "x,y"
    assert "dbfs:/mlops/in does not exist" in out["missing_error"]
    assert (data_dir / "volumes/dev/ml/raw/copy/b.csv").read_text() == "x,y\n1,2\n"
    assert not (data_dir / "dbfs/mlops/in").exists()


def test_to_local_maps_databricks_paths(tmp_path):
    assert to_local("dbfs:/a/b.csv", tmp_path) == tmp_path / "dbfs/a/b.csv"
    assert to_local("/dbfs/a/b.csv", tmp_path) == tmp_path / "dbfs/a/b.csv"
    assert to_local("/Volumes/cat/sch/vol/x.parquet", tmp_path) == tmp_path / "volumes/cat/sch/vol/x.parquet"
    assert to_local("file:/tmp/x", tmp_path) == Path("/tmp/x")
    # ".." cannot climb out of the DBFS root.
    assert to_local("dbfs:/../../etc/passwd", tmp_path) == tmp_path / "dbfs/etc/passwd"
    with pytest.raises(ValueError, match="Unsupported path 'relative/x'"):
        to_local("relative/x", tmp_path)


def test_workspace_faults_are_retried(tmp_path, workspace):
    proxy = FaultProxy(workspace.url)
    driver = new_driver(tmp_path, workspace, "faults", url=proxy.url)
    try:
        proxy.faults["/api/2.0/workspace/export"] = 2
        result = run(driver, task("empty"))
    finally:
        driver.kill()
        proxy.stop()

    assert result["result_state"] == "SUCCESS", (result["error"], result["error_trace"])
    assert proxy.faults["/api/2.0/workspace/export"] == 0


# --------------------------------------------------------------------------- python files, env, concurrency


def test_spark_python_task_runs_file_as_main_with_argv_and_env(driver):
    ok = run(
        driver,
        task(
            kind="spark_python",
            source="GIT",
            git_root=str(NOTEBOOKS),
            python_file="plain_script.py",
            parameters=["--date", "2026-01-02", "--rows", "5"],
            env={"SCORING_ENV": "prod"},
        ),
    )
    failed = run(
        driver,
        task(
            kind="spark_python",
            python_file=str(NOTEBOOKS / "plain_script.py"),
            parameters=["--date", "x", "--rows", "-1"],
        ),
    )

    assert ok["result_state"] == "SUCCESS", ok
    assert "name=__main__ date=2026-01-02 rows=5 env=prod" in ok["logs"]
    assert failed["result_state"] == "FAILED"
    assert failed["error"] == "SystemExit: 3"


def test_concurrent_executions_keep_their_own_output_and_env(driver):
    first = Pending(driver, task("env_and_output", base_parameters={"tag": "AAA"}, env={"RUN_TAG": "one"}))
    second = Pending(driver, task("env_and_output", base_parameters={"tag": "BBB"}, env={"RUN_TAG": "two"}))
    a, b = first.result(), second.result()

    assert (a["result_state"], b["result_state"]) == ("SUCCESS", "SUCCESS")
    assert (a["notebook_result"], b["notebook_result"]) == ("one", "two")
    assert "AAA line 4" in a["logs"] and "BBB" not in a["logs"]
    assert "BBB line 4" in b["logs"] and "AAA" not in b["logs"]


def test_driver_environment_comes_from_the_control_plane(driver, workspace):
    workspace.add_notebook(
        "show_env",
        "import os\n"
        "dbutils.notebook.exit(os.environ['MLFLOW_TRACKING_URI'] + ' ' + str('DEVSTACK_DRIVER_TOKEN' in os.environ))\n",
    )
    result = run(driver, task("show_env"))

    # The workspace token the driver uses is not handed to notebook code.
    assert result["notebook_result"] == "http://127.0.0.1:5999 False"


def test_notebook_without_spark_never_starts_spark(driver):
    result = run(driver, task("widgets"))

    assert result["spark_started"] is False
    assert driver.spark_started is False


# --------------------------------------------------------------------------- cancel, kill, death


def test_cancel_interrupts_a_sleeping_notebook_and_the_cluster_keeps_working(driver):
    pending = Pending(driver, task("sleep", base_parameters={"seconds": "120"}))
    assert wait_until(lambda: pending.task["exec_id"] in driver.running)
    time.sleep(0.3)
    started = time.monotonic()
    driver.cancel(pending.task["exec_id"], grace=10)
    result = pending.result(timeout=10)

    assert result["result_state"] == "CANCELED"
    assert time.monotonic() - started < 5
    assert "sleeping" in result["logs"]
    assert driver.alive
    assert run(driver, task("empty"))["result_state"] == "SUCCESS"


def test_cancel_that_is_ignored_kills_the_whole_process_tree(tmp_path, workspace):
    driver = new_driver(tmp_path, workspace, "blocked")
    pid_file = tmp_path / "child.pid"
    pending = Pending(driver, task("block", base_parameters={"pid_file": str(pid_file)}))
    assert wait_until(lambda: pid_file.exists() and pid_file.read_text().strip()), (
        "notebook never started its child"
    )
    child_pid = int(pid_file.read_text())

    driver.cancel(pending.task["exec_id"], grace=1)
    result = pending.result(timeout=20)

    assert result["result_state"] == "CANCELED"
    assert wait_until(lambda: not pid_alive(driver.pid) and not pid_alive(child_pid))
    assert not driver.alive


def test_kill_completes_inflight_executions_as_canceled(tmp_path, workspace):
    driver = new_driver(tmp_path, workspace, "killed")
    pending = [Pending(driver, task("sleep", base_parameters={"seconds": "120"})) for _ in range(2)]
    assert wait_until(lambda: len(driver.running) == 2)
    time.sleep(0.3)
    driver.kill()

    assert [p.result(timeout=10)["result_state"] for p in pending] == ["CANCELED", "CANCELED"]
    assert not driver.alive
    assert not pid_alive(driver.pid)


def test_driver_death_fails_inflight_and_later_executions(tmp_path, workspace):
    driver = new_driver(tmp_path, workspace, "dies")
    pending = Pending(driver, task("sleep", base_parameters={"seconds": "120"}))
    assert wait_until(lambda: pending.task["exec_id"] in driver.running)
    time.sleep(0.3)
    os.kill(driver.pid, signal.SIGKILL)

    result = pending.result(timeout=10)
    assert result["result_state"] == "FAILED"
    assert "driver process died" in result["error"]
    assert wait_until(lambda: not driver.alive)
    late = run(driver, task("empty"), timeout=5)
    assert late["result_state"] == "FAILED"
    assert "driver.log" in late["error"]


def test_start_failure_raises_with_the_log_tail(tmp_path, workspace):
    driver = DriverProcess(
        "cluster-broken",
        cluster_dir=tmp_path / "broken",
        data_dir=tmp_path / "data",
        workspace_url=workspace.url,
        token=TOKEN,
        env={"PYTHONHOME": str(tmp_path / "no-python-here")},
    )
    with pytest.raises(DriverStartError, match="cluster-broken exited") as info:
        driver.start(timeout=20)
    assert "encodings" in str(info.value)  # Python's own complaint, from driver.log


def test_threads_started_by_a_notebook_log_into_its_run_and_context_names_the_run(driver):
    result = run(
        driver,
        task(
            "threads_and_context",
            job_id=5,
            run_id=501,
            job_run_id=500,
            task_key="train",
            env={"RUN_TAG": "t1"},
        ),
    )

    assert result["result_state"] == "SUCCESS", (result["error"], result["error_trace"])
    out = json.loads(result["notebook_result"])
    assert out["squares"] == [0, 1, 4]
    for i in range(3):
        assert f"worker {i} sees t1" in result["logs"]
    assert out["path"] == "/Shared/rt/threads_and_context"
    assert out["job_id"] == 5
    assert out["tags"] == {
        "clusterId": "cluster-shared",
        "jobId": "5",
        "runId": "501",
        "multitaskParentRunId": "500",
        "taskKey": "train",
    }


def test_workspace_notebook_imports_workspace_files_from_its_folder(driver):
    result = run(driver, task("uses_module"))

    assert result["result_state"] == "SUCCESS", (result["error"], result["error_trace"])
    assert result["notebook_result"] == "10,20,30"


def test_git_notebook_imports_modules_from_the_checkout(tmp_path, workspace):
    driver = new_driver(tmp_path, workspace, "git-imports")  # fresh: no module cached yet
    try:
        result = run(driver, task(source="GIT", git_root=str(NOTEBOOKS), notebook_path="uses_module"))
    finally:
        driver.kill()

    assert result["result_state"] == "SUCCESS", (result["error"], result["error_trace"])
    assert result["notebook_result"] == "10,20,30"


def test_spark_python_task_from_a_workspace_file_imports_its_neighbours(driver, workspace):
    workspace.add_file(
        "/Shared/rt/jobs/score.py",
        "import sys\nfrom jobhelpers.scaling import scale\nfrom pathlib import Path\n"
        "print('scaled', scale([int(sys.argv[1])], 2), 'from', Path(__file__).name)\n",
    )
    workspace.add_file("/Shared/rt/jobs/jobhelpers/__init__.py", "")
    workspace.add_file(
        "/Shared/rt/jobs/jobhelpers/scaling.py", "def scale(v, f):\n    return [x * f for x in v]\n"
    )
    result = run(driver, task(kind="spark_python", python_file="/Shared/rt/jobs/score.py", parameters=["21"]))

    assert result["result_state"] == "SUCCESS", (result["error"], result["error_trace"])
    assert "scaled [42] from score.py" in result["logs"]


def add_notebook(workspace: RuntimeWorkspace, name: str, code: str) -> None:
    workspace.add_notebook(name, code)


def test_dropdown_default_outside_its_choices_fails_naming_the_widget(driver, workspace):
    add_notebook(workspace, "bad_dropdown", "dbutils.widgets.dropdown('env', 'qa', ['dev', 'prod'])\n")
    result = run(driver, task("bad_dropdown"))

    assert result["result_state"] == "FAILED"
    assert "dropdown widget 'env'" in result["error"] and "['dev', 'prod']" in result["error"]


def test_removed_widget_is_no_longer_readable(driver, workspace):
    add_notebook(
        workspace,
        "remove_widget",
        "dbutils.widgets.text('a', '1')\ndbutils.widgets.text('b', '2')\n"
        "dbutils.widgets.remove('a')\nprint(sorted(dbutils.widgets.getAll()))\n"
        "dbutils.widgets.removeAll()\ndbutils.widgets.get('b')\n",
    )
    result = run(driver, task("remove_widget"))

    assert "['b']" in result["logs"]
    assert result["result_state"] == "FAILED"
    assert "No input widget named b" in result["error"]


def test_secret_in_an_error_message_is_redacted(driver, workspace):
    add_notebook(
        workspace,
        "leak_secret",
        "raise RuntimeError('login failed for ' + dbutils.secrets.get('mlflow', 'token'))\n",
    )
    result = run(driver, task("leak_secret"))

    assert result["result_state"] == "FAILED"
    assert result["error"] == "RuntimeError: login failed for [REDACTED]"
    assert "t0k3n-xyz" not in result["error_trace"]


def test_run_magic_passes_arguments_and_fs_magic_and_pandas_display_work(driver, data_dir):
    result = run(driver, task("run_with_args"))

    assert result["result_state"] == "SUCCESS", (result["error"], result["error_trace"])
    assert result["notebook_result"] == "hello data team"
    assert (data_dir / "dbfs/magic/dir").is_dir()
    assert "dbfs:/magic/dir/" in result["logs"]  # %fs ls output
    assert "1  forest  51.9" in result["logs"]  # display(pandas DataFrame) prints a table


def test_combobox_and_multiselect_widgets(driver, workspace):
    add_notebook(
        workspace,
        "more_widgets",
        "import json\n"
        "dbutils.widgets.combobox('metric', 'rmse', ['rmse', 'mae'])\n"
        "dbutils.widgets.multiselect('envs', 'dev,staging', ['dev', 'staging', 'prod'])\n"
        "dbutils.notebook.exit(json.dumps([dbutils.widgets.get('metric'), dbutils.widgets.get('envs').split(',')]))\n",
    )
    defaults = run(driver, task("more_widgets"))
    passed = run(driver, task("more_widgets", base_parameters={"metric": "r2", "envs": "prod"}))

    assert json.loads(defaults["notebook_result"]) == ["rmse", ["dev", "staging"]]
    assert json.loads(passed["notebook_result"]) == ["r2", ["prod"]]


def test_a_notebook_that_replaces_stdout_and_argv_does_not_break_later_executions(driver, workspace):
    add_notebook(
        workspace,
        "rude",
        "import os, sys\nsys.argv = ['rude']\nsys.stdout = open(os.devnull, 'w')\nprint('swallowed')\n",
    )
    assert run(driver, task("rude"))["result_state"] == "SUCCESS"
    after = run(
        driver,
        task(
            kind="spark_python", python_file=str(NOTEBOOKS / "plain_script.py"), parameters=["--date", "d1"]
        ),
    )

    assert after["result_state"] == "SUCCESS", (after["error"], after["error_trace"])
    assert "date=d1 rows=0" in after["logs"]


def test_cancel_right_after_execute_never_hangs_the_cluster(driver, workspace):
    add_notebook(workspace, "marker", "dbutils.fs.put('dbfs:/markers/ran', 'yes', True)\n")
    results = []
    for _ in range(10):
        pending = Pending(driver, task("marker"))
        driver.cancel(pending.task["exec_id"], grace=10)
        results.append(pending.result(timeout=5)["result_state"])

    # Canceled (or, at worst, already finished), never hanging, and the cluster lives on.
    assert set(results) <= {"CANCELED", "SUCCESS"}
    assert "CANCELED" in results
    assert driver.alive
