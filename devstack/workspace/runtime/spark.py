"""The driver's local Spark: started on first use, shared by all executions, one job group each.

Nothing here imports pyspark until a notebook actually touches ``spark`` or ``sc``: a notebook
that never uses Spark must never start a JVM.
"""

from __future__ import annotations

import os
import shlex
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devstack.workspace.runtime.execution import current
from devstack.workspace.runtime.fs import StorageMap, to_local


class SparkManager:
    def __init__(
        self,
        cluster_id: str,
        cluster_dir: Path,
        data_dir: Path,
        spark_conf: dict[str, str],
        on_started: Callable[[], None],
        storage: StorageMap | None = None,
    ):
        self.cluster_id = cluster_id
        self.cluster_dir = Path(cluster_dir)
        self.data_dir = Path(data_dir).resolve()
        self.storage = storage or StorageMap(self.data_dir)
        self._lock = threading.Lock()
        self._session: Any = None
        self._on_started = on_started
        self._local = threading.local()
        self.conf = self._defaults()
        user = {str(k): str(v) for k, v in spark_conf.items()}
        java_opts = user.pop("spark.driver.extraJavaOptions", "")
        self.conf.update(user)
        if java_opts:
            self.conf["spark.driver.extraJavaOptions"] += " " + java_opts

    def _defaults(self) -> dict[str, str]:
        tmp = self.cluster_dir / "spark-tmp"
        return {
            "spark.master": "local[2]",
            "spark.app.name": f"devstack-{self.cluster_id}",
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
            "spark.sql.shuffle.partitions": "4",
            "spark.default.parallelism": "2",
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.sql.warehouse.dir": str(self.cluster_dir / "spark-warehouse"),
            # dbfs:/x is <data_dir>/dbfs/x for everything Hadoop-based (readers, writers, SQL,
            # the FileSystem API): a ViewFs mount table overloads the dbfs scheme.
            "spark.hadoop.fs.dbfs.impl": "org.apache.hadoop.fs.viewfs.ViewFileSystemOverloadScheme",
            "spark.hadoop.fs.viewfs.mounttable.default.linkFallback": (self.data_dir / "dbfs").as_uri(),
            "spark.hadoop.fs.viewfs.overload.scheme.target.file.impl": "org.apache.hadoop.fs.LocalFileSystem",
            **self._abfss_mounts(),
            # C1-only JIT and the serial GC halve the JVM's start on a small machine; the
            # emulator runs small data, where peak throughput does not matter.
            "spark.driver.extraJavaOptions": (
                f"-Dderby.system.home={self.cluster_dir / 'derby'} -Djava.io.tmpdir={tmp} "
                "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
            ),
        }

    def _abfss_mounts(self) -> dict[str, str]:
        """abfss://<container>@<account>.dfs.core.windows.net/x is <account dir>/<container>/x.

        The same ViewFs overload as dbfs:, one mount table per URI authority, for the containers
        that exist when Spark starts (Spark SQL on abfss:// paths needs these); the
        DataFrame reader/writer patch below maps any container, including later ones.
        """
        if not self.storage.accounts:
            return {}
        viewfs = "org.apache.hadoop.fs.viewfs.ViewFileSystemOverloadScheme"
        conf = {"spark.hadoop.fs.abfss.impl": viewfs, "spark.hadoop.fs.abfs.impl": viewfs}
        for account, directory in sorted(self.storage.accounts.items()):
            containers = (
                sorted(p.name for p in directory.iterdir() if p.is_dir()) if directory.is_dir() else []
            )
            for container in containers:
                authority = f"{container}@{account}.dfs.core.windows.net"
                conf[f"spark.hadoop.fs.viewfs.mounttable.{authority}.linkFallback"] = (
                    directory / container
                ).as_uri()
        return conf

    def prepare_environment(self) -> None:
        """Let ``SparkSession.builder.getOrCreate()`` in user code get our settings too."""
        args = []
        for key, value in self.conf.items():
            if key == "spark.master":
                args += ["--master", value]
            else:
                args += ["--conf", f"{key}={value}"]
        os.environ["PYSPARK_SUBMIT_ARGS"] = shlex.join([*args, "pyspark-shell"])
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        # Scratch space under the cluster dir (the env var, unlike spark.local.dir, draws no warning).
        os.environ.setdefault("SPARK_LOCAL_DIRS", str(self.cluster_dir / "spark-tmp"))
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)

    def _context(self) -> Any:
        """The live SparkContext: ours, or one user code created with getOrCreate()."""
        if "pyspark" in sys.modules:
            from pyspark import SparkContext

            return SparkContext._active_spark_context
        return None

    @property
    def started(self) -> bool:
        return self._context() is not None

    def session(self) -> Any:
        """The SparkSession (started on first call), with the caller's job group set."""
        if self._session is not None and self._context() is None:
            self._session = None  # a notebook called spark.stop(): start a new one on demand
        if self._session is None:
            with self._lock:
                if self._session is None:
                    (self.cluster_dir / "spark-tmp").mkdir(parents=True, exist_ok=True)
                    (self.data_dir / "dbfs").mkdir(parents=True, exist_ok=True)
                    from pyspark.sql import SparkSession

                    self.conf.update(self._abfss_mounts())  # containers made since the driver started
                    builder = SparkSession.builder
                    for key, value in self.conf.items():
                        builder = builder.config(key, value)
                    session = builder.getOrCreate()
                    session.sparkContext.setLogLevel("WARN")
                    self._session = session
                    self._on_started()
        self.tag_thread()
        return self._session

    def tag_thread(self) -> None:
        """Put this thread's Spark jobs in its execution's job group (so cancel can stop them)."""
        execution = current()
        if execution is None or getattr(self._local, "group", None) == execution.exec_id:
            return
        context = self._context()
        if context is None:
            return
        context.setJobGroup(execution.exec_id, f"devstack execution {execution.exec_id}", True)
        self._local.group = execution.exec_id

    def cancel(self, exec_id: str) -> None:
        context = self._context()
        if context is not None:
            try:
                context.cancelJobGroup(exec_id)
            except Exception as exc:  # Spark may be stopping; cancel stays best-effort
                print(f"cancelJobGroup({exec_id}) failed: {exc}", file=sys.__stderr__)


class LazyProxy:
    """``spark`` / ``sc`` in a notebook: the real object is created on first attribute access."""

    def __init__(self, factory: Callable[[], Any], name: str):
        object.__setattr__(self, "_factory", factory)
        object.__setattr__(self, "_name", name)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._factory(), attr)

    @property
    def __class__(self):  # noqa: D105 - isinstance(spark, SparkSession) must hold
        return type(self._factory())

    def __setattr__(self, attr: str, value: Any) -> None:
        setattr(self._factory(), attr, value)

    def __repr__(self) -> str:
        return repr(self._factory())

    def __call__(self, *args, **kwargs):
        return self._factory()(*args, **kwargs)


def display(obj: Any = None, *args: Any, **kwargs: Any) -> None:
    """Print a readable table for Spark and pandas DataFrames, else the object itself."""
    module = type(obj).__module__ or ""
    if module.startswith("pyspark") and hasattr(obj, "show"):
        n = int(kwargs.get("limit", 20)) if isinstance(kwargs.get("limit", 20), int) else 20
        obj.show(n, truncate=False)
    elif module.startswith("pandas") and hasattr(obj, "to_string"):
        print(obj.to_string(max_rows=60, max_cols=30))
    elif obj is not None:
        print(obj)


def display_html(html: str) -> None:
    print(f"[displayHTML] {html}")


# ---------------------------------------------------------------------- DBFS / Volumes / abfss paths in Spark

_MAPPED_PREFIXES = ("dbfs:", "/dbfs/", "/Volumes/", "abfss://", "abfs://")
_READER_METHODS = ("load", "csv", "json", "text", "orc", "parquet")
_WRITER_METHODS = ("save", "csv", "json", "text", "orc", "parquet")


def _map_path(value: Any, data_dir: StorageMap | Path) -> Any:
    if isinstance(value, str) and value.startswith(_MAPPED_PREFIXES):
        return "file://" + str(to_local(value, data_dir))
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return type(value)(_map_path(v, data_dir) for v in value)
    return value


def _mapping(method: Callable, data_dir: Path, every_positional: bool) -> Callable:
    import functools

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        if args:
            if every_positional:
                args = tuple(_map_path(a, data_dir) for a in args)
            else:
                args = (_map_path(args[0], data_dir), *args[1:])
        for key in ("path", "paths"):
            if key in kwargs:
                kwargs[key] = _map_path(kwargs[key], data_dir)
        return method(self, *args, **kwargs)

    wrapper._devstack_mapped = True
    return wrapper


def _patch_readwriter(module: Any, data_dir: Path) -> None:
    for cls, names in ((module.DataFrameReader, _READER_METHODS), (module.DataFrameWriter, _WRITER_METHODS)):
        for name in names:
            method = getattr(cls, name, None)
            if method is None or getattr(method, "_devstack_mapped", False):
                continue
            # DataFrameReader.parquet(*paths) takes several paths; the others one (or a list).
            every = cls is module.DataFrameReader and name == "parquet"
            setattr(cls, name, _mapping(method, data_dir, every))


class _ReadWriterHook:
    """Patches pyspark's DataFrameReader/Writer right after their module is imported, however
    user code reaches Spark, so ``spark.read.csv("dbfs:/x")`` reads ``<data_dir>/dbfs/x``."""

    target = "pyspark.sql.readwriter"

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != self.target:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader.exec_module = _then_patch(spec.loader.exec_module, self.data_dir)
                return spec
        return None


def _then_patch(exec_module: Callable, data_dir: Path) -> Callable:
    def patched(module: Any) -> None:
        exec_module(module)
        _patch_readwriter(module, data_dir)

    return patched


def map_spark_paths(storage: StorageMap | Path) -> None:
    """Make Spark readers and writers understand dbfs:/, /dbfs/, /Volumes/ and abfss:// paths."""
    if not isinstance(storage, StorageMap):
        storage = StorageMap(Path(storage))
    module = sys.modules.get(_ReadWriterHook.target)
    if module is not None:
        _patch_readwriter(module, storage)
    else:
        sys.meta_path.insert(0, _ReadWriterHook(storage))
