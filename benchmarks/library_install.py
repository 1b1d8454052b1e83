"""What a cluster library costs: its environment, a warm pip install, and a task that needs it.

    .venv/bin/python -m benchmarks.library_install [--rounds 5] [--package tomli-w==1.2.0] [--no-e2e]

In-process (``LibrariesBackend`` and ``DriverProcess``, no workspace):

- a fresh cluster environment (the virtualenv every driver start creates);
- a driver start on the environment's interpreter against one on the base interpreter;
- installing ``--package`` into a fresh environment with pip's cache warm (one warm-up install
  first), and the same library asked for again on that cluster (already installed).

End to end (one ``python -m devstack.workspace``, databricks-sdk): job runs of two notebook
tasks sharing one job cluster, the second after the first; the second task's setup time
(launch -> executing) with ``--package`` in its ``libraries`` against the same task without
libraries: the cost of a library install on a warm job cluster.

Results go to ``benchmarks/results/library_install-<time>.json``.
"""

from __future__ import annotations

import argparse
import base64
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.results_file import save, timed  # noqa: E402

TOKEN = "dapi-bench-libraries"


def ms(values: list[float]) -> dict[str, float]:
    return {
        "median_ms": round(statistics.median(values) * 1000, 1),
        "max_ms": round(max(values) * 1000, 1),
        "samples": len(values),
    }


def in_process(root: Path, package: str, rounds: int) -> dict:
    from devstack.workspace.libraries.backend import LibrariesBackend
    from devstack.workspace.runtime.client import DriverProcess

    def no_files(path: str) -> bytes:
        raise FileNotFoundError(path)

    backend = LibrariesBackend(root / "envs", no_files)
    library = {"pypi": {"package": package}}
    backend.start_environment("warm-up")
    backend.install_for_task("warm-up", [library])  # pip's cache now holds the wheel
    create, first, again = [], [], []
    for i in range(rounds):
        cluster_id = f"cluster-{i}"
        create.append(timed(backend.start_environment, cluster_id))
        first.append(timed(backend.install_for_task, cluster_id, [library]))
        again.append(timed(backend.install_for_task, cluster_id, [library]))

    def driver_start(python: str | None) -> float:
        driver = DriverProcess(
            "bench",
            cluster_dir=root / "driver",
            data_dir=root / "data",
            workspace_url="http://127.0.0.1:9",
            token="x",
            python=python,
        )
        try:
            return timed(driver.start, 60)
        finally:
            driver.kill()

    env_python = str(backend.start_environment("driver"))
    base_starts, env_starts = [], []
    for _ in range(rounds):
        base_starts.append(driver_start(None))
        env_starts.append(driver_start(env_python))
    return {
        "environment_create": ms(create),
        "driver_start_base_interpreter": ms(base_starts),
        "driver_start_cluster_environment": ms(env_starts),
        "install_warm_cache_fresh_environment": ms(first),
        "install_again_same_cluster": ms(again),
    }


NOTEBOOK = "# Databricks notebook source\nimport sys\ndbutils.notebook.exit(sys.prefix)\n"


def end_to_end(root: Path, package: str, rounds: int) -> dict:
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.service import compute, jobs
    from databricks.sdk.service.workspace import ImportFormat, Language

    from devstack.services import start_workspace

    service = start_workspace("bench-libraries", root / "ws", token=TOKEN)
    try:
        client = WorkspaceClient(host=service.url, token=TOKEN)
        client.workspace.mkdirs("/Shared/bench")
        client.workspace.import_(
            "/Shared/bench/nb",
            content=base64.b64encode(NOTEBOOK.encode()).decode(),
            format=ImportFormat.SOURCE,
            language=Language.PYTHON,
            overwrite=True,
        )
        cluster = compute.ClusterSpec(
            spark_version="15.4.x-scala2.12", node_type_id="Standard_DS3_v2", num_workers=0
        )

        def job(name: str, libraries: list[compute.Library]) -> int:
            def task(key: str, **extra) -> jobs.Task:
                return jobs.Task(
                    task_key=key,
                    notebook_task=jobs.NotebookTask(notebook_path="/Shared/bench/nb"),
                    job_cluster_key="shared",
                    **extra,
                )

            return client.jobs.create(
                name=name,
                job_clusters=[jobs.JobCluster(job_cluster_key="shared", new_cluster=cluster)],
                tasks=[
                    task("first"),
                    task("second", depends_on=[jobs.TaskDependency("first")], libraries=libraries),
                ],
            ).job_id

        def second_task_setup(job_id: int) -> float:
            run = client.jobs.run_now(job_id).result()
            second = next(t for t in run.tasks if t.task_key == "second")
            if second.state.result_state != jobs.RunResultState.SUCCESS:
                raise RuntimeError(
                    f"second task ended {second.state.result_state}: {second.state.state_message}"
                )
            return second.setup_duration / 1000.0

        library = compute.Library(pypi=compute.PythonPyPiLibrary(package=package))
        plain, with_lib = job("without-libraries", []), job("with-library", [library])
        second_task_setup(with_lib)  # warm-up: pip's cache, the notebook, the code paths
        without, with_library = [], []
        for _ in range(rounds):
            without.append(second_task_setup(plain))
            with_library.append(second_task_setup(with_lib))
        return {
            "second_task_setup_without_libraries": ms(without),
            "second_task_setup_with_library": ms(with_library),
        }
    finally:
        service.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--package", default="tomli-w==1.2.0")
    parser.add_argument("--no-e2e", action="store_true", help="only the in-process figures")
    args = parser.parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-libraries-") as tmp:
        figures = {"package": args.package, "in_process": in_process(Path(tmp), args.package, args.rounds)}
        if not args.no_e2e:
            figures["end_to_end"] = end_to_end(Path(tmp), args.package, args.rounds)
    figures["seconds"] = round(time.monotonic() - started, 1)
    save("library_install", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
