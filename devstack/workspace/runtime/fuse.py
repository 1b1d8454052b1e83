"""``/Volumes/...`` and ``/dbfs/...`` for plain Python in the driver, as Databricks' FUSE mounts give.

On Databricks, ``open("/Volumes/c/s/v/x.csv")``, ``os.listdir("/dbfs/tmp")`` and
``pandas.read_csv("/Volumes/...")`` work because those roots are mounted into the driver's file
system. Here nothing may be mounted, so the driver maps such paths itself: ``builtins.open`` /
``io.open``, the ``os`` functions that files, pathlib, shutil and pandas go through, and pandas'
own path normalisation (so readers that hand the path to pyarrow's C++ code, such as
``read_parquet``, see the local path too). Paths not under those roots pass through untouched.

Not covered: child processes (``%sh``, ``subprocess``), and C extensions given a FUSE path directly
(``pyarrow.parquet.read_table("/Volumes/...")``): pass them ``dbfs:``-free local paths or go
through pandas/Spark.
"""

from __future__ import annotations

import builtins
import functools
import io
import os
import sys
from collections.abc import Callable
from typing import Any

from devstack.workspace.runtime.fs import StorageMap

ROOTS = ("/Volumes", "/dbfs")
# os functions whose first argument (and, for the two-path ones, second) is a path.
_ONE_PATH = (
    "stat", "lstat", "listdir", "scandir", "mkdir", "rmdir", "remove", "unlink", "open", "access",
    "utime", "chmod", "truncate", "readlink",
)  # fmt: skip
_TWO_PATHS = ("rename", "replace")

_installed: StorageMap | None = None


def _is_fuse(path: str) -> bool:
    return any(path == root or path.startswith(root + "/") for root in ROOTS)


def map_path(value: Any, storage: StorageMap | None = None) -> Any:
    """The local path behind a FUSE path (str or PathLike); anything else unchanged."""
    storage = storage or _installed
    if storage is None or isinstance(value, (bytes, int)) or value is None:
        return value
    try:
        text = os.fspath(value)
    except TypeError:
        return value
    if not isinstance(text, str) or not _is_fuse(text):
        return value
    return str(storage.to_local(text, bare="local"))


def _first(func: Callable) -> Callable:
    @functools.wraps(func)
    def wrapper(*args, **kwargs):  # os.listdir() and os.scandir() may come without a path
        if args:
            args = (map_path(args[0]), *args[1:])
        for key in ("path", "file"):
            if key in kwargs:
                kwargs[key] = map_path(kwargs[key])
        return func(*args, **kwargs)

    wrapper._devstack_fuse = True
    return wrapper


def _both(func: Callable) -> Callable:
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        args = tuple(map_path(a) if i < 2 else a for i, a in enumerate(args))
        for key in ("src", "dst"):
            if key in kwargs:
                kwargs[key] = map_path(kwargs[key])
        return func(*args, **kwargs)

    wrapper._devstack_fuse = True
    return wrapper


def _stringify(func: Callable) -> Callable:
    @functools.wraps(func)
    def wrapper(filepath_or_buffer, *args, **kwargs):
        return map_path(func(filepath_or_buffer, *args, **kwargs))

    wrapper._devstack_fuse = True
    return wrapper


def _patch_pandas() -> None:
    """Every pandas module's ``stringify_path`` (how its readers and writers normalise paths)."""
    common = sys.modules.get("pandas.io.common")
    original = getattr(common, "stringify_path", None)
    if original is None or getattr(original, "_devstack_fuse", False):
        return
    patched = _stringify(original)
    for name, module in list(sys.modules.items()):
        if (name == "pandas" or name.startswith("pandas.")) and getattr(
            module, "stringify_path", None
        ) is original:
            module.stringify_path = patched


class _PandasHook:
    """Patches pandas right after ``import pandas`` finishes, whenever notebook code imports it."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != "pandas":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader.exec_module = _then_patch_pandas(spec.loader.exec_module)
                return spec
        return None


def _then_patch_pandas(exec_module: Callable) -> Callable:
    def patched(module: Any) -> None:
        exec_module(module)
        _patch_pandas()

    return patched


def install(storage: StorageMap) -> None:
    """Map ``/Volumes`` and ``/dbfs`` paths for the rest of this (driver) process."""
    global _installed
    _installed = storage
    # The mount points exist on Databricks: os.makedirs("/dbfs/x/y") must find its root.
    storage.to_local("/dbfs").mkdir(parents=True, exist_ok=True)
    if getattr(builtins.open, "_devstack_fuse", False):
        return
    patched_open = _first(builtins.open)
    builtins.open = patched_open
    io.open = patched_open
    for name in _ONE_PATH:
        if hasattr(os, name):
            setattr(os, name, _first(getattr(os, name)))
    for name in _TWO_PATHS:
        setattr(os, name, _both(getattr(os, name)))
    if "pandas" in sys.modules:
        _patch_pandas()
    else:
        sys.meta_path.insert(0, _PandasHook())
