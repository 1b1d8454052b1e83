"""A cluster's own Python environment, layered over the base runtime.

On Databricks every cluster has its own Python environment: the runtime's packages, plus the
libraries installed on that cluster, invisible to other clusters. Here the base runtime is the
Python environment the workspace itself runs in (the project's virtualenv). A cluster's
environment is a virtualenv of its own, without pip, whose site-packages holds a ``.pth`` file
that adds the base runtime's site-packages after its own:

- the driver runs on the environment's interpreter, so notebooks (and Spark's Python workers,
  and child processes started with ``sys.executable``) see the cluster's libraries first and the
  runtime's packages behind them;
- pip runs on that same interpreter (pip itself comes from the base runtime), so requirements
  the runtime already satisfies are not installed again, and a library that needs another
  version of a runtime package gets it in the cluster's environment only: pip does not touch
  files outside the environment it installs into.

Creating one is cheap (a few directories and symlinks, no pip bootstrap), so every driver gets
a fresh one when it starts, and it is deleted when the driver goes away.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import venv
from pathlib import Path

BASE_PTH = "_devstack_base_runtime.pth"


def base_site_packages() -> list[str]:
    """The site-packages directories of the base runtime (the environment this process runs in)."""
    return [p for p in site.getsitepackages() if os.path.isdir(p)]


class PythonEnvironment:
    """One cluster's Python environment at ``path``.

    :param path: the environment's directory (created by :meth:`create`).
    :param base: site-packages directories the environment layers over; by default the ones of
        the running interpreter.
    """

    def __init__(self, path: Path, base: list[str] | None = None):
        self.path = Path(path)
        self.base = list(base) if base is not None else base_site_packages()

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    @property
    def site_packages(self) -> Path:
        version = f"python{sys.version_info.major}.{sys.version_info.minor}"
        return self.path / "lib" / version / "site-packages"

    def exists(self) -> bool:
        return self.python.exists() and (self.site_packages / BASE_PTH).exists()

    def create(self) -> None:
        """A fresh, empty environment (whatever was at ``path`` is removed first)."""
        self.remove()
        venv.EnvBuilder(symlinks=True, with_pip=False, clear=True).create(self.path)
        lines = "".join(f"site.addsitedir({p!r}); " for p in self.base)
        # A .pth line starting with "import" runs: addsitedir also reads the base's .pth files.
        (self.site_packages / BASE_PTH).write_text(f"import site; {lines}\n")

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def pip_install(self, args: list[str], *, timeout: float = 900) -> subprocess.CompletedProcess:
        """``pip install <args>`` into this environment; the completed process (never raises on failure)."""
        cmd = [
            str(self.python),
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "--progress-bar",
            "off",
            *args,
        ]
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        return subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            stdin=subprocess.DEVNULL,
            cwd=self.path,
        )
