"""Run real Airflow DAG runs (`airflow dags test`) against a given metadata DB and DAGs folder."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


# A line Airflow logged (it starts with its timestamp), as opposed to a traceback's lines.
_LOG_LINE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:")


@dataclass
class DagRunResult:
    dag_id: str
    returncode: int
    output: str

    @property
    def state(self) -> str | None:
        """The final DAG run state Airflow logged (success, failed), or None if it never finished."""
        found = re.findall(r"DagRun Finished: .*?state=(\w+)", self.output)
        return found[-1] if found else None

    @property
    def succeeded(self) -> bool:
        return self.returncode == 0 and self.state == "success"

    def failures(self, tail_lines: int = 12) -> str:
        """Every task failure the run logged: the error line and the end of its traceback, in order.

        A failed run's output is long and its end shows only the last task; a report that starts
        with these says which task failed first, and why.
        """
        out = self.output.splitlines()
        found = []
        for i, line in enumerate(out):
            # The second: `airflow dags test` runs a deferred task's trigger inline and logs it so
            # when the trigger raises (the task then fails at once, with no retry).
            if "Task failed with exception" not in line and "[DAG TEST] Error running task" not in line:
                continue
            end = i + 1
            while end < len(out) and not _LOG_LINE.match(out[end]):
                end += 1
            found.append("\n".join([line, *out[max(i + 1, end - tail_lines) : end]]))
        return "\n...\n".join(found)


class AirflowRunner:
    """An AIRFLOW_HOME plus metadata DB; runs `airflow` commands with a clean environment."""

    def __init__(self, home: Path, sql_alchemy_conn: str | None = None):
        self.home = home
        self.sql_alchemy_conn = sql_alchemy_conn or f"sqlite:///{home / 'airflow.db'}"
        home.mkdir(parents=True, exist_ok=True)

    def env(self, dags_folder: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
        # Start from the caller's environment minus any Airflow settings it carries, so a
        # developer's own AIRFLOW_* variables never leak into these runs.
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_", "AIRFLOW__"))
        }
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.sql_alchemy_conn,
                "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins")]),
                "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            }
        )
        env.update(extra or {})
        return env

    def migrate(self) -> None:
        proc = subprocess.run(
            [str(VENV_BIN / "airflow"), "db", "migrate"],
            env=self.env(self.home / "dags"),
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")

    def dags_test(
        self,
        dag_id: str,
        dags_folder: Path,
        *,
        conf: dict | None = None,
        logical_date: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 600,
    ) -> DagRunResult:
        """Run one real DAG run with `airflow dags test` and return its output and final state.

        When ``<dags_folder>/<dag_id>.py`` exists only that file is parsed (faster). Runs that go
        on at the same time should use separate metadata DBs: concurrent `dags test` processes
        on one DB can still race on registering a DAG.
        """
        cmd = [str(VENV_BIN / "airflow"), "dags", "test", dag_id]
        dag_file = dags_folder / f"{dag_id}.py"
        if dag_file.exists():
            cmd += ["--dagfile-path", str(dag_file)]
        if logical_date:
            cmd.append(logical_date)
        if conf is not None:
            cmd += ["--conf", json.dumps(conf)]
        proc = subprocess.run(
            cmd, env=self.env(dags_folder, env), capture_output=True, text=True, timeout=timeout, cwd=ROOT
        )
        return DagRunResult(dag_id, proc.returncode, proc.stdout + proc.stderr)
