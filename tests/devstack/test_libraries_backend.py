"""Cluster libraries in-process: real pip installs into per-cluster environments.

The package used, tomli-w, is tiny, pure Python and not in the project's environment; pip's
cache makes every install after the first a local one.
"""

from __future__ import annotations

import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from devstack.workspace.libraries.backend import LibrariesBackend, LibraryInstallError

TOMLI_W = {"pypi": {"package": "tomli-w==1.2.0"}}
NO_SUCH = {"pypi": {"package": "devstack-no-such-package-q7"}}


def run_python(python: Path, code: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60)


def make_wheel(path: Path, name: str, version: str, module_source: str) -> Path:
    """A minimal pure-Python wheel holding one module ``name``."""
    wheel = path / f"{name}-{version}-py3-none-any.whl"
    dist_info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(f"{name}.py", module_source)
        zf.writestr(f"{dist_info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        zf.writestr(
            f"{dist_info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        zf.writestr(f"{dist_info}/RECORD", "")
    return wheel


@pytest.fixture
def volume(tmp_path) -> Path:
    root = tmp_path / "volume"
    root.mkdir()
    return root


@pytest.fixture
def backend(tmp_path, volume) -> LibrariesBackend:
    def read_file(path: str) -> bytes:
        assert path.startswith("/Volumes/main/default/libs/")
        return (volume / path.removeprefix("/Volumes/main/default/libs/")).read_bytes()

    return LibrariesBackend(tmp_path / "envs", read_file)


def test_task_library_is_installed_into_its_cluster_only(backend):
    python_a = backend.start_environment("cluster-a")
    python_b = backend.start_environment("cluster-b")
    backend.install_for_task("cluster-a", [TOMLI_W])

    on_a = run_python(python_a, "import tomli_w, pandas; print(tomli_w.dumps({'a': 1}).strip())")
    assert on_a.returncode == 0, on_a.stderr
    assert on_a.stdout.strip() == "a = 1"  # the library and the base runtime's packages together
    on_b = run_python(python_b, "import tomli_w")
    assert "No module named 'tomli_w'" in on_b.stderr
    base = run_python(Path(sys.executable), "import tomli_w")
    assert "No module named 'tomli_w'" in base.stderr
    assert [(s["library"], s["status"]) for s in backend.statuses("cluster-a")] == [(TOMLI_W, "INSTALLED")]
    assert backend.statuses("cluster-b") == []


def test_a_package_pip_cannot_find_fails_with_the_install_message(backend):
    backend.start_environment("cluster-a")
    with pytest.raises(LibraryInstallError) as raised:
        backend.install_for_task("cluster-a", [NO_SUCH])
    message = raised.value.message
    assert message.startswith("Library installation failed for library due to user error for pypi")
    assert "devstack-no-such-package-q7" in message
    assert "ERROR_NO_MATCHING_DISTRIBUTION" in message
    (status,) = backend.statuses("cluster-a")
    assert status["status"] == "FAILED"
    assert "No matching distribution found for devstack-no-such-package-q7" in status["messages"][0]


def test_wheel_and_requirements_from_a_volume(backend, volume):
    make_wheel(volume, "devstack_probe", "0.1", "ANSWER = 42\n")
    (volume / "requirements.txt").write_text("tomli-w==1.2.0\n")
    python = backend.start_environment("cluster-a")
    backend.install_for_task(
        "cluster-a",
        [
            {"whl": "/Volumes/main/default/libs/devstack_probe-0.1-py3-none-any.whl"},
            {"requirements": "/Volumes/main/default/libs/requirements.txt"},
        ],
    )
    done = run_python(python, "import devstack_probe, tomli_w; print(devstack_probe.ANSWER)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "42"

    with pytest.raises(LibraryInstallError, match="missing.whl could not be read"):
        backend.install_for_task("cluster-a", [{"whl": "/Volumes/main/default/libs/missing.whl"}])


def test_egg_fails_and_jvm_libraries_are_skipped(backend):
    backend.start_environment("cluster-a")
    with pytest.raises(LibraryInstallError, match="Python eggs are not supported on Databricks Runtime 14.0"):
        backend.install_for_task("cluster-a", [{"egg": "/Volumes/main/default/libs/x.egg"}])
    backend.install_for_task("cluster-a", [{"maven": {"coordinates": "com.example:lib:1.0"}}])
    statuses = {next(iter(s["library"])): s for s in backend.statuses("cluster-a")}
    assert statuses["maven"]["status"] == "SKIPPED"
    assert "Python only" in statuses["maven"]["messages"][0]


def test_installing_is_announced_once_and_only_when_something_installs(backend):
    calls = []
    maven = {"maven": {"coordinates": "com.example:lib:1.0"}}
    jar = {"jar": "/Volumes/main/default/libs/lib.jar"}
    backend.install_for_task("cluster-a", [maven, jar], lambda: calls.append("installing"))
    assert calls == ["installing"]  # one phase for both libraries
    backend.install_for_task("cluster-a", [maven, jar], lambda: calls.append("again"))
    backend.install_for_task("cluster-a", None, lambda: calls.append("none"))
    assert calls == ["installing"]  # the cluster has them: nothing to wait for


def wait_for(backend: LibrariesBackend, cluster_id: str, done, timeout: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        statuses = backend.statuses(cluster_id)
        if done(statuses) or time.monotonic() > deadline:
            return statuses
        time.sleep(0.1)


def test_restart_reinstalls_api_libraries_only(backend):
    backend.request_install("cluster-a", [TOMLI_W])  # terminated: waits for the cluster
    assert [s["status"] for s in backend.statuses("cluster-a")] == ["PENDING"]

    python = backend.start_environment("cluster-a")
    backend.cluster_running("cluster-a")
    statuses = wait_for(backend, "cluster-a", lambda s: s[0]["status"] in ("INSTALLED", "FAILED"))
    assert [s["status"] for s in statuses] == ["INSTALLED"]
    assert run_python(python, "import tomli_w").returncode == 0
    never_installed = {"pypi": {"package": "tomli-w==1.1.0"}}
    backend.request_uninstall("cluster-a", [TOMLI_W, never_installed])
    assert [s["status"] for s in backend.statuses("cluster-a")] == ["UNINSTALL_ON_RESTART"]

    backend.request_install("cluster-a", [{"pypi": {"package": "humanize"}}])
    wait_for(backend, "cluster-a", lambda s: s[0]["status"] == "INSTALLED")
    # A restart: a fresh environment; the uninstalled library is gone, the other is installed again.
    python = backend.start_environment("cluster-a")
    assert run_python(python, "import humanize").returncode == 1
    backend.cluster_running("cluster-a")
    statuses = wait_for(backend, "cluster-a", lambda s: s[0]["status"] in ("INSTALLED", "FAILED"))
    assert [(s["library"], s["status"]) for s in statuses] == [
        ({"pypi": {"package": "humanize"}}, "INSTALLED")
    ]
    assert run_python(python, "import humanize").returncode == 0
    assert run_python(python, "import tomli_w").returncode == 1


def test_task_libraries_live_as_long_as_the_driver(backend):
    python = backend.start_environment("job-cluster")
    backend.install_for_task("job-cluster", [TOMLI_W])
    assert python.exists()
    backend.cluster_stopped("job-cluster")
    assert not python.exists()
    assert backend.statuses("job-cluster") == []


def test_api_libraries_outlive_a_workspace_restart(tmp_path):
    from devstack.workspace.store import Store

    def no_files(path: str) -> bytes:
        raise FileNotFoundError(path)

    store = Store(tmp_path / "workspace.db")
    first = LibrariesBackend(tmp_path / "envs", no_files, store)
    first.start_environment("cluster-a")
    first.cluster_running("cluster-a")
    first.request_install("cluster-a", [TOMLI_W, {"pypi": {"package": "humanize"}}])
    wait_for(first, "cluster-a", lambda s: all(x["status"] == "INSTALLED" for x in s))
    first.request_uninstall("cluster-a", [{"pypi": {"package": "humanize"}}])
    first.install_for_task("cluster-a", [{"maven": {"coordinates": "com.example:lib:1.0"}}])
    stale = first.root / "cluster-a"
    assert stale.is_dir()

    # The process dies; a new one reads the same store: every driver is gone, so the clusters
    # restart: the library marked for removal is gone, the task's library too.
    second = LibrariesBackend(tmp_path / "envs", no_files, store)
    assert not stale.exists()
    assert [(s["library"], s["status"]) for s in second.statuses("cluster-a")] == [(TOMLI_W, "PENDING")]
    store.close()


def test_a_driver_stopping_does_not_wait_for_a_pip_install(backend):
    import threading

    python = backend.start_environment("cluster-a")
    backend.cluster_running("cluster-a")
    cluster = backend._cluster("cluster-a")
    pip_started, pip_may_end = threading.Event(), threading.Event()
    real_pip = cluster.env.pip_install

    def slow_pip(args, **kwargs):  # a big package: pip runs for a while
        pip_started.set()
        pip_may_end.wait(30)
        return real_pip(args, **kwargs)

    cluster.env.pip_install = slow_pip
    backend.request_install("cluster-a", [TOMLI_W])
    assert pip_started.wait(10)
    stopping = threading.Thread(target=backend.cluster_stopped, args=("cluster-a",), daemon=True)
    stopping.start()
    stopping.join(5)
    try:
        assert not stopping.is_alive()  # clusters/delete and restart do not wait for pip
    finally:
        pip_may_end.set()
    # The install ends, then the driver's environment goes; the API library waits for the next start.
    statuses = wait_for(backend, "cluster-a", lambda s: s[0]["status"] == "PENDING" and not python.exists())
    assert [(s["library"], s["status"]) for s in statuses] == [(TOMLI_W, "PENDING")]
    assert not python.exists()
    python = backend.start_environment("cluster-a")  # the next driver installs it again
    backend.cluster_running("cluster-a")
    statuses = wait_for(backend, "cluster-a", lambda s: s[0]["status"] in ("INSTALLED", "FAILED"))
    assert [s["status"] for s in statuses] == ["INSTALLED"]
    assert run_python(python, "import tomli_w").returncode == 0
