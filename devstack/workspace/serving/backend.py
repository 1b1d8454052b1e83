"""Model Serving endpoints: configs, served entities, their processes, traffic, metrics, capture.

An endpoint has an active ``config`` (what answers queries) and at most one ``pending_config``
(what is loading). ``update_config`` validates at once (bad names, routes not adding up to 100,
a name taken: Databricks' 400s), then loads the new served entities in the background: each is a
Unity Catalog model version, resolved through the workspace's UC registry and loaded by
:mod:`.worker` in a process of its own. When every entity is ready the pending config becomes
the active one and the processes of entities it no longer has are stopped; when one cannot load
the update is UPDATE_FAILED and the old config keeps serving. Entities that a new config keeps
unchanged (same name, model, version and settings) keep their process, so a canary step only
loads the candidate.

Scale-to-zero: an entity with ``scale_to_zero_enabled`` whose process has been idle for
``idle_seconds`` is stopped; the next query starts it again (a cold start), as after a restart
of the workspace.

No HTTP here: :mod:`.api` renders these records with databricks-sdk's dataclasses.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import queue
import random
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from devstack.workspace.http import ApiError, invalid, not_found
from devstack.workspace.store import Store, dumps, loads

log = logging.getLogger("devstack.workspace.serving")

SCHEMA = """
CREATE TABLE IF NOT EXISTS serving_endpoints (
    name TEXT PRIMARY KEY,
    doc  TEXT NOT NULL
);
"""

# Endpoint and served-entity names: alphanumerics, dashes and underscores, at most 63 characters
# (the limits databricks-sdk documents for ``name``).
NAME = re.compile(r"^[A-Za-z0-9_-]{1,63}$")
WORKLOAD_SIZES = ("Small", "Medium", "Large")
READY, CREATING, FAILED = "DEPLOYMENT_READY", "DEPLOYMENT_CREATING", "DEPLOYMENT_FAILED"
IN_PROGRESS, NOT_UPDATING, UPDATE_FAILED = "IN_PROGRESS", "NOT_UPDATING", "UPDATE_FAILED"
# Upper bounds (ms) of the latency histogram in the Prometheus metrics.
LATENCY_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
# A secret reference in environment_vars, resolved when the entity starts (as Databricks does).
SECRET_REF = re.compile(r"\{\{\s*secrets/([^/\s]+)/([^/\s}]+)\s*\}\}")
PROJECT_ROOT = Path(__file__).resolve().parents[3]
SCALED_TO_ZERO = "Scaled to zero: the next request starts the served entity again (cold start)."


def now_ms() -> int:
    return int(time.time() * 1000)


class LoadError(Exception):
    """A served entity could not be loaded (the message goes to its state and build log)."""


# --------------------------------------------------------------------------- processes


class ServedProcess:
    """The worker process of one served entity, and keep-alive connections to it."""

    def __init__(self, model_dir: Path, env: dict[str, str], log_dir: Path, python: str = sys.executable):
        self.model_dir = model_dir
        self.env = env
        self.log_dir = log_dir
        self.python = python
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.last_used = time.monotonic()
        self.lock = threading.Lock()
        self._pool: queue.LifoQueue[http.client.HTTPConnection] = queue.LifoQueue()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float) -> float:
        """Start the worker and wait for its ``ready`` line; returns the seconds it took."""
        started = time.monotonic()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
        with open(self.log_dir / "server.log", "ab") as server_log:
            self.proc = subprocess.Popen(
                [self.python, "-m", "devstack.workspace.serving.worker", "--model-dir", str(self.model_dir)],
                stdout=subprocess.PIPE,
                stderr=server_log,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.log_dir,
                start_new_session=True,
            )
        lines: queue.Queue[str] = queue.Queue()
        proc = self.proc
        threading.Thread(target=lambda: lines.put(proc.stdout.readline().decode()), daemon=True).start()
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            self.stop()
            raise LoadError(f"the model did not load within {timeout:.0f} s") from None
        if not line.startswith("ready "):
            proc.wait(timeout=10)
            raise LoadError(f"the model server exited with code {proc.returncode}: {self.log_tail()}")
        self.port = int(line.split()[1])
        self.last_used = time.monotonic()
        return time.monotonic() - started

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = (self.log_dir / "server.log").read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])

    def invoke(self, body: bytes) -> tuple[int, bytes]:
        self.last_used = time.monotonic()
        try:
            conn = self._pool.get_nowait()
        except queue.Empty:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            conn.request("POST", "/invocations", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            conn.close()
            raise
        self._pool.put(conn)
        self.last_used = time.monotonic()
        return response.status, data

    def stop(self) -> None:
        while True:
            try:
                self._pool.get_nowait().close()
            except queue.Empty:
                break
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if proc.stdout:
            proc.stdout.close()


# --------------------------------------------------------------------------- metrics, capture


@dataclass
class EntityMetrics:
    requests: int = 0
    errors_4xx: int = 0
    errors_5xx: int = 0
    latency_sum_ms: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS_MS))

    def record(self, status: int, latency_ms: float) -> None:
        self.requests += 1
        if 400 <= status < 500:
            self.errors_4xx += 1
        elif status >= 500:
            self.errors_5xx += 1
        self.latency_sum_ms += latency_ms
        for i, bound in enumerate(LATENCY_BUCKETS_MS):
            if latency_ms <= bound:
                self.buckets[i] += 1


class InferenceTables:
    """Requests and responses appended, in batches, to each endpoint's payload table.

    A Unity Catalog inference table is a Delta table; here it is a directory of parquet files
    under the shared metastore, ``<metastore>/tables/<catalog>/<schema>/<prefix>_payload/``
    (readable with pandas or Spark's parquet reader), with the columns Databricks documents
    for legacy inference tables (databricks_request_id, client_request_id, date, timestamp_ms,
    status_code, sampling_fraction, execution_time_ms, request, response, request_metadata).
    """

    def __init__(self, root: Path):
        self.root = root
        self._rows: dict[Path, list[dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def table_dir(self, catalog: str, schema: str, table: str) -> Path:
        return self.root / "tables" / catalog.lower() / schema.lower() / table.lower()

    def append(self, table_dir: Path, row: dict[str, Any]) -> None:
        with self._lock:
            self._rows.setdefault(table_dir, []).append(row)

    def flush(self) -> None:
        with self._lock:
            pending, self._rows = self._rows, {}
        if not pending:
            return
        import datetime

        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema(
            [
                ("databricks_request_id", pa.string()),
                ("client_request_id", pa.string()),
                ("date", pa.date32()),
                ("timestamp_ms", pa.int64()),
                ("status_code", pa.int32()),
                ("sampling_fraction", pa.float64()),
                ("execution_time_ms", pa.int64()),
                ("request", pa.string()),
                ("response", pa.string()),
                ("request_metadata", pa.map_(pa.string(), pa.string())),
            ]
        )
        for table_dir, rows in pending.items():
            for row in rows:
                row["date"] = datetime.datetime.fromtimestamp(row["timestamp_ms"] / 1000, datetime.UTC).date()
                row["request_metadata"] = list(row["request_metadata"].items())
            table_dir.mkdir(parents=True, exist_ok=True)
            name = f"part-{now_ms()}-{uuid.uuid4().hex[:8]}.parquet"
            tmp = table_dir / f".{name}.tmp"
            pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp)
            tmp.rename(table_dir / name)  # readers never see half a file


# --------------------------------------------------------------------------- the backend


def _entity_key(entity: dict[str, Any]) -> tuple:
    """What must be equal for an entity of a new config to keep the running one."""
    return (
        entity["name"],
        entity["entity_name"],
        entity["entity_version"],
        entity["workload_size"],
        entity["scale_to_zero_enabled"],
        tuple(sorted(entity["environment_vars"].items())),
    )


class ServingBackend:
    """The serving endpoints of one workspace.

    :param store: the workspace's SQLite store (endpoints survive a restart; processes do not,
        so their entities start again on the first query).
    :param registry: the workspace's Unity Catalog model registry (``UcModelRegistry``).
    :param metastore: the shared metastore (schemas of inference tables, where tables live).
    :param data_dir: where build and server logs of served entities are kept.
    :param idle_seconds: idle time after which a scale-to-zero entity is stopped.
    :param load_timeout: seconds a served entity may take to load.
    :param secret: ``(scope, key) -> value or None``: the workspace's secrets, for
        ``{{secrets/<scope>/<key>}}`` references in environment_vars.
    """

    def __init__(
        self,
        store: Store,
        registry: Any,
        metastore: Any,
        data_dir: Path,
        *,
        idle_seconds: float = 1800.0,
        load_timeout: float = 180.0,
        rng: random.Random | None = None,
        secret: Callable[[str, str], str | None] | None = None,
    ):
        self.store = store
        self.secret = secret or (lambda scope, key: None)
        self.store.ensure_schema(SCHEMA)
        self.registry = registry
        self.metastore = metastore
        self.data_dir = data_dir
        self.idle_seconds = idle_seconds
        self.load_timeout = load_timeout
        self.random = rng or random.Random()
        self.tables = InferenceTables(metastore.root) if metastore is not None else None
        self._lock = threading.RLock()
        self._procs: dict[str, ServedProcess] = {}
        self._metrics: dict[tuple[str, str], EntityMetrics] = {}
        self._stopping = threading.Event()
        self._housekeeper = threading.Thread(
            target=self._housekeeping, name="serving-housekeeping", daemon=True
        )
        self._housekeeper.start()
        for doc in self._all():  # updates cut short by a restart carry on
            if doc.get("pending_config") and doc["config_update"] == IN_PROGRESS:
                self._start_loader(doc)

    # -- persistence ----------------------------------------------------------------------

    def _load(self, name: str) -> dict[str, Any] | None:
        row = self.store.one("SELECT doc FROM serving_endpoints WHERE name = ?", (name,))
        return loads(row["doc"]) if row else None

    def _require(self, name: str) -> dict[str, Any]:
        doc = self._load(name)
        if doc is None:
            raise not_found(f"Endpoint with name '{name}' does not exist.")
        return doc

    def _save(self, doc: dict[str, Any]) -> None:
        doc["last_updated_timestamp"] = now_ms()
        self.store.execute(
            "INSERT INTO serving_endpoints (name, doc) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET doc = excluded.doc",
            (doc["name"], dumps(doc)),
        )

    def _all(self) -> list[dict[str, Any]]:
        return [loads(r["doc"]) for r in self.store.all("SELECT doc FROM serving_endpoints ORDER BY name")]

    # -- validation -----------------------------------------------------------------------

    def _entities(self, config: dict[str, Any], creator: str) -> list[dict[str, Any]]:
        raw = config.get("served_entities")
        if raw is None and config.get("served_models") is not None:
            # The deprecated served_models form: model_name/model_version.
            raw = [
                {**m, "entity_name": m.get("model_name"), "entity_version": m.get("model_version")}
                for m in config["served_models"]
            ]
        if not isinstance(raw, list) or not raw:
            raise invalid(
                "The endpoint config must have at least one served entity: give served_entities with "
                "entity_name (a Unity Catalog model, catalog.schema.model) and entity_version."
            )
        entities, names = [], set()
        for spec in raw:
            if not isinstance(spec, dict):
                raise invalid("Each served entity must be an object with entity_name and entity_version.")
            if spec.get("external_model") or spec.get("foundation_model"):
                raise invalid(
                    "External and foundation models are not served by this workspace: serve a Unity "
                    "Catalog model version (entity_name, entity_version)."
                )
            entity_name, version = spec.get("entity_name"), spec.get("entity_version")
            if not entity_name:
                raise invalid("Missing required field: served_entities.entity_name (catalog.schema.model).")
            if version in (None, ""):
                raise invalid(
                    f"Missing required field: entity_version of served entity '{entity_name}'. Endpoints "
                    "serve an exact version, not an alias: resolve the alias to its version first."
                )
            full = self.registry.full_name(entity_name)[0] if self.registry else entity_name
            name = spec.get("name") or f"{full.split('.')[-1]}-{version}"
            if not NAME.match(name):
                raise invalid(
                    f"Invalid served entity name {name!r}: use letters, digits, dashes and underscores "
                    "(at most 63 characters)."
                )
            if name in names:
                raise invalid(
                    f"Served entity name '{name}' is used twice in the config: names must be unique."
                )
            names.add(name)
            size = spec.get("workload_size") or "Small"
            if size not in WORKLOAD_SIZES:
                raise invalid(
                    f"Invalid workload_size {size!r} for served entity '{name}': use one of "
                    f"{', '.join(WORKLOAD_SIZES)}."
                )
            env = spec.get("environment_vars") or {}
            if not isinstance(env, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in env.items()
            ):
                raise invalid(f"environment_vars of served entity '{name}' must map strings to strings.")
            entities.append(
                {
                    "name": name,
                    "entity_name": full,
                    "entity_version": str(version),
                    "workload_size": size,
                    "workload_type": spec.get("workload_type") or "CPU",
                    "scale_to_zero_enabled": bool(spec.get("scale_to_zero_enabled", False)),
                    "environment_vars": env,
                    "creator": creator,
                    "creation_timestamp": now_ms(),
                }
            )
        return entities

    @staticmethod
    def _traffic(config: dict[str, Any], entities: list[dict[str, Any]]) -> dict[str, Any]:
        names = [e["name"] for e in entities]
        traffic = config.get("traffic_config")
        if not traffic or not traffic.get("routes"):
            if len(entities) == 1:
                return {
                    "routes": [
                        {
                            "served_model_name": names[0],
                            "served_entity_name": names[0],
                            "traffic_percentage": 100,
                        }
                    ]
                }
            raise invalid(
                f"The config serves {len(entities)} entities ({', '.join(names)}): give traffic_config.routes "
                "with a traffic_percentage for each, adding up to 100."
            )
        routes, seen = [], set()
        for route in traffic["routes"]:
            target = route.get("served_entity_name") or route.get("served_model_name")
            if target not in names:
                raise invalid(
                    f"Route to served entity {target!r}, which the config does not have (it has "
                    f"{', '.join(names)}). Name a served entity of this config in each route."
                )
            if target in seen:
                raise invalid(f"Served entity '{target}' has two routes: give each entity one route.")
            seen.add(target)
            share = route.get("traffic_percentage")
            if isinstance(share, bool) or not isinstance(share, int) or not 0 <= share <= 100:
                raise invalid(
                    f"Invalid traffic_percentage {share!r} for served entity '{target}': an integer from 0 to 100."
                )
            routes.append(
                {"served_model_name": target, "served_entity_name": target, "traffic_percentage": share}
            )
        total = sum(r["traffic_percentage"] for r in routes)
        if total != 100:
            shares = ", ".join(f"{r['served_entity_name']}={r['traffic_percentage']}" for r in routes)
            raise invalid(
                f"The traffic percentages of the routes add up to {total}, not 100 ({shares}). "
                "Give the routes shares that add up to exactly 100."
            )
        return {"routes": routes}

    def _capture(
        self, endpoint: str, config: dict[str, Any], current: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        capture = config.get("auto_capture_config")
        if capture is None:
            return current  # an update without it keeps the endpoint's capture settings
        if not capture.get("enabled", True):
            return {**(current or {}), "enabled": False}
        catalog, schema = capture.get("catalog_name"), capture.get("schema_name")
        if not catalog or not schema:
            raise invalid(
                "auto_capture_config needs catalog_name and schema_name: the Unity Catalog schema "
                "where the inference table is created."
            )
        if self.metastore is None:
            raise invalid("This workspace has no Unity Catalog metastore for inference tables.")
        self.metastore.require_schema(catalog, schema)
        prefix = capture.get("table_name_prefix") or endpoint
        table = re.sub(r"[^A-Za-z0-9_]", "_", prefix).lower() + "_payload"
        return {
            "catalog_name": catalog.lower(),
            "schema_name": schema.lower(),
            "table_name_prefix": prefix,
            "enabled": True,
            "state": {"payload_table": {"name": table, "status": "ACTIVE"}},
        }

    # -- endpoints ------------------------------------------------------------------------

    def create(
        self,
        name: str,
        config: dict[str, Any] | None,
        *,
        creator: str,
        description: str | None = None,
        tags: list[dict[str, str]] | None = None,
    ) -> dict[str, Any]:
        if not name or not NAME.match(name):
            raise invalid(
                f"Invalid endpoint name {name!r}: use letters, digits, dashes and underscores (at most 63 characters)."
            )
        if not config:
            raise invalid("Missing required field: config (served_entities and traffic_config).")
        with self._lock:
            if self._load(name) is not None:
                raise ApiError(
                    400,
                    "RESOURCE_ALREADY_EXISTS",
                    f"Endpoint with name '{name}' already exists. Choose another name, or update its "
                    "config (PUT /api/2.0/serving-endpoints/{name}/config).",
                )
            doc = {
                "name": name,
                "id": uuid.uuid4().hex,
                "creator": creator,
                "creation_timestamp": now_ms(),
                "description": description,
                "tags": tags or [],
                "config": None,
                "pending_config": None,
                "config_update": NOT_UPDATING,
                "next_config_version": 1,
            }
            self._stage(doc, config, creator)
            self._save(doc)
        self._start_loader(doc)
        return self.get(name)

    def update_config(self, name: str, config: dict[str, Any], *, creator: str) -> dict[str, Any]:
        with self._lock:
            doc = self._require(name)
            if doc["config_update"] == IN_PROGRESS:
                raise ApiError(
                    409,
                    "RESOURCE_CONFLICT",
                    f"Endpoint '{name}' is already updating to config version "
                    f"{doc['pending_config']['config_version']}: wait until its config_update is "
                    "NOT_UPDATING or UPDATE_FAILED, then update it.",
                )
            self._stage(doc, config, creator)
            self._save(doc)
        self._start_loader(doc)
        return self.get(name)

    def _stage(self, doc: dict[str, Any], config: dict[str, Any], creator: str) -> None:
        """Validate ``config`` and make it the pending config (entities kept from the active one)."""
        entities = self._entities(config, creator)
        traffic = self._traffic(config, entities)
        active = doc.get("config") or {}
        capture = self._capture(doc["name"], config, active.get("auto_capture_config"))
        running = {
            _entity_key(e): e for e in active.get("served_entities", []) if e["state"]["deployment"] == READY
        }
        for entity in entities:
            kept = running.get(_entity_key(entity))
            if kept is not None:
                entity.update(
                    uid=kept["uid"], creator=kept["creator"], creation_timestamp=kept["creation_timestamp"]
                )
                entity["state"] = dict(kept["state"])
            else:
                entity["uid"] = uuid.uuid4().hex
                entity["state"] = {
                    "deployment": CREATING,
                    "deployment_state_message": "Creating the served entity: loading the model version.",
                }
        doc["pending_config"] = {
            "config_version": doc["next_config_version"],
            "start_time": now_ms(),
            "served_entities": entities,
            "traffic_config": traffic,
            "auto_capture_config": capture,
        }
        doc["next_config_version"] += 1
        doc["config_update"] = IN_PROGRESS

    def get(self, name: str) -> dict[str, Any]:
        return self._render(self._require(name))

    def list(self) -> list[dict[str, Any]]:
        return [self._render(doc) for doc in self._all()]

    def delete(self, name: str) -> None:
        with self._lock:
            doc = self._require(name)
            self.store.execute("DELETE FROM serving_endpoints WHERE name = ?", (name,))
            for key in [k for k in self._metrics if k[0] == name]:
                del self._metrics[key]
        for config in (doc.get("config"), doc.get("pending_config")):
            for entity in (config or {}).get("served_entities", []):
                self._stop(entity["uid"])

    # -- loading --------------------------------------------------------------------------

    def _start_loader(self, doc: dict[str, Any]) -> None:
        pending = doc["pending_config"]
        threading.Thread(
            target=self._load_config,
            args=(doc["name"], doc["id"], pending["config_version"]),
            name=f"serving-load-{doc['name']}",
            daemon=True,
        ).start()

    def _log_dir(self, endpoint: str, uid: str) -> Path:
        return self.data_dir / endpoint / uid

    def _build_log(self, endpoint: str, uid: str, message: str) -> None:
        path = self._log_dir(endpoint, uid) / "build.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        with open(path, "a") as fh:
            fh.write(f"{stamp} {message}\n")

    def _model_dir(self, entity: dict[str, Any]) -> Path:
        """The files of the entity's model version, from the UC registry (raises LoadError)."""
        try:
            version = self.registry.get_model_version(entity["entity_name"], entity["entity_version"])
        except ApiError as exc:
            raise LoadError(f"{exc.error_code}: {exc.message}") from None
        if version.status != "READY":
            raise LoadError(
                f"Version {entity['entity_version']} of '{entity['entity_name']}' is {version.status}, "
                "not READY: finish its registration first."
            )
        location = urlsplit(version.storage_location)
        path = Path(unquote(location.path))
        if location.scheme != "file" or not (path / "MLmodel").is_file():
            raise LoadError(
                f"Version {entity['entity_version']} of '{entity['entity_name']}' has no MLmodel file at "
                f"{version.storage_location}: it is not an MLflow model that can be served."
            )
        return path

    def _environment(self, entity: dict[str, Any]) -> dict[str, str]:
        """environment_vars with ``{{secrets/<scope>/<key>}}`` replaced by the secret (raises LoadError)."""
        env = {}
        for name, value in entity["environment_vars"].items():
            ref = SECRET_REF.fullmatch(value.strip())
            if ref is None:
                env[name] = value
                continue
            secret = self.secret(ref.group(1), ref.group(2))
            if secret is None:
                raise LoadError(
                    f"Environment variable {name} refers to secret '{ref.group(2)}' in scope "
                    f"'{ref.group(1)}', which does not exist: create it (databricks secrets put-secret) "
                    "or fix the reference."
                )
            env[name] = secret
        return env

    def _load_entity(self, endpoint: str, entity: dict[str, Any]) -> ServedProcess:
        uid = entity["uid"]
        self._build_log(
            endpoint,
            uid,
            f"Resolving {entity['entity_name']} version {entity['entity_version']} in Unity Catalog",
        )
        model_dir = self._model_dir(entity)
        self._build_log(endpoint, uid, f"Model files: {model_dir}")
        proc = ServedProcess(model_dir, self._environment(entity), self._log_dir(endpoint, uid))
        try:
            took = proc.start(self.load_timeout)
        except LoadError:
            proc.stop()
            raise
        self._build_log(endpoint, uid, f"Model server ready in {took:.1f} s")
        return proc

    def _load_config(self, name: str, endpoint_id: str, config_version: int) -> None:
        doc = self._load(name)
        if (
            doc is None
            or doc["id"] != endpoint_id
            or (doc.get("pending_config") or {}).get("config_version") != config_version
        ):
            return
        started: dict[str, ServedProcess] = {}
        failure: tuple[str, str] | None = None
        for entity in doc["pending_config"]["served_entities"]:
            if entity["state"]["deployment"] == READY:
                continue  # kept from the active config, already running (or scaled to zero)
            try:
                started[entity["uid"]] = self._load_entity(name, entity)
            except LoadError as exc:
                self._build_log(name, entity["uid"], f"FAILED: {exc}")
                failure = (entity["uid"], str(exc))
                break
            except Exception as exc:  # a bug or an OS error: still a failed update, never a hang
                log.exception("loading served entity %s of %s", entity["name"], name)
                failure = (entity["uid"], f"{type(exc).__name__}: {exc}")
                break
        with self._lock:
            doc = self._load(name)
            current = (doc or {}).get("pending_config") or {}
            if doc is None or doc["id"] != endpoint_id or current.get("config_version") != config_version:
                for proc in started.values():  # deleted meanwhile
                    proc.stop()
                return
            if failure is not None:
                uid, message = failure
                for proc in started.values():
                    proc.stop()
                for entity in current["served_entities"]:
                    if entity["uid"] == uid:
                        entity["state"] = {"deployment": FAILED, "deployment_state_message": message}
                    elif entity["uid"] in started:
                        entity["state"] = {
                            "deployment": "DEPLOYMENT_ABORTED",
                            "deployment_state_message": "Aborted: another served entity of this config failed.",
                        }
                # The failed config stays visible as pending_config (its entities' states and build
                # logs say why); the active config keeps serving. Assumption: Databricks shows the
                # failed update this way until the next update (its docs only say the old config
                # keeps serving).
                doc["config_update"] = UPDATE_FAILED
                self._save(doc)
                log.warning("endpoint %s: update to config %s failed: %s", name, config_version, message)
                return
            for entity in current["served_entities"]:
                if entity["uid"] in started:
                    entity["state"] = {"deployment": READY, "deployment_state_message": ""}
                    self._procs[entity["uid"]] = started[entity["uid"]]
            kept = {e["uid"] for e in current["served_entities"]}
            retired = [
                e["uid"] for e in (doc.get("config") or {}).get("served_entities", []) if e["uid"] not in kept
            ]
            doc["config"] = {k: v for k, v in current.items() if k != "start_time"}
            doc["pending_config"] = None
            doc["config_update"] = NOT_UPDATING
            self._save(doc)
        for uid in retired:
            self._stop(uid)
        log.info("endpoint %s serves config version %s", name, config_version)

    def _stop(self, uid: str) -> None:
        with self._lock:
            proc = self._procs.pop(uid, None)
        if proc is not None:
            proc.stop()

    # -- queries --------------------------------------------------------------------------

    def choose(self, doc: dict[str, Any], served: str | None) -> dict[str, Any]:
        """The served entity that answers: the one named, or one drawn by the routes' weights."""
        config = doc.get("config")
        if config is None:
            raise ApiError(
                503,
                "TEMPORARILY_UNAVAILABLE",
                f"Endpoint '{doc['name']}' is not ready: it has no config that loaded yet "
                f"(config_update {doc['config_update']}). Wait until state.ready is READY.",
            )
        entities = {e["name"]: e for e in config["served_entities"]}
        if served is not None:
            if served not in entities:
                raise not_found(
                    f"Served entity '{served}' does not exist on endpoint '{doc['name']}' (it serves "
                    f"{', '.join(entities)})."
                )
            return entities[served]
        routes = [r for r in config["traffic_config"]["routes"] if r["traffic_percentage"] > 0]
        route = self.random.choices(routes, weights=[r["traffic_percentage"] for r in routes])[0]
        return entities[route["served_entity_name"]]

    def _process(self, endpoint: str, entity: dict[str, Any]) -> ServedProcess:
        """The entity's running process, started first when scaled to zero (a cold start)."""
        uid = entity["uid"]
        with self._lock:
            proc = self._procs.get(uid)
            if proc is None:
                proc = self._procs[uid] = ServedProcess(
                    None, entity["environment_vars"], self._log_dir(endpoint, uid)
                )  # type: ignore[arg-type]
        if proc.running:
            return proc
        with proc.lock:
            if not proc.running:
                self._build_log(endpoint, uid, "Cold start: starting the model server for a request")
                try:
                    proc.model_dir = self._model_dir(entity)
                    proc.env = self._environment(entity)
                    took = proc.start(self.load_timeout)
                except LoadError as exc:
                    self._build_log(endpoint, uid, f"Cold start FAILED: {exc}")
                    raise ApiError(
                        503,
                        "TEMPORARILY_UNAVAILABLE",
                        f"Served entity '{entity['name']}' of endpoint '{endpoint}' could not start: {exc}",
                    ) from None
                self._build_log(endpoint, uid, f"Model server ready in {took:.1f} s")
        return proc

    def query(
        self, name: str, body: bytes, *, served: str | None = None, client_request_id: str | None = None
    ) -> tuple[int, bytes, str]:
        """Answer one query: (HTTP status, JSON body, served entity name)."""
        started = time.monotonic()
        stamp = now_ms()
        doc = self._require(name)
        entity = self.choose(doc, served)
        proc = self._process(name, entity)
        try:
            status, data = proc.invoke(body)
        except (OSError, http.client.HTTPException) as exc:
            status = 503
            data = json.dumps(
                {
                    "error_code": "TEMPORARILY_UNAVAILABLE",
                    "message": f"Served entity '{entity['name']}' did not answer: {exc}. Retry the request.",
                }
            ).encode()
        took_ms = (time.monotonic() - started) * 1000
        with self._lock:
            self._metrics.setdefault((name, entity["name"]), EntityMetrics()).record(status, took_ms)
        capture = doc["config"].get("auto_capture_config") or {}
        if capture.get("enabled") and self.tables is not None:
            table = self.tables.table_dir(
                capture["catalog_name"], capture["schema_name"], capture["state"]["payload_table"]["name"]
            )
            self.tables.append(
                table,
                {
                    "databricks_request_id": str(uuid.uuid4()),
                    "client_request_id": client_request_id,
                    "timestamp_ms": stamp,
                    "status_code": status,
                    "sampling_fraction": 1.0,
                    "execution_time_ms": int(took_ms),
                    "request": body.decode(errors="replace"),
                    "response": data.decode(errors="replace"),
                    "request_metadata": {
                        "endpoint_name": name,
                        "model_name": entity["entity_name"],
                        "model_version": entity["entity_version"],
                        "served_entity_name": entity["name"],
                    },
                },
            )
        return status, data, entity["name"]

    # -- logs and metrics -----------------------------------------------------------------

    def _entity_by_name(self, name: str, served: str) -> dict[str, Any]:
        doc = self._require(name)
        for config in (doc.get("pending_config"), doc.get("config")):
            for entity in (config or {}).get("served_entities", []):
                if entity["name"] == served:
                    return entity
        raise not_found(f"Served model '{served}' does not exist on endpoint '{name}'.")

    def build_logs(self, name: str, served: str) -> str:
        entity = self._entity_by_name(name, served)
        return self._read(self._log_dir(name, entity["uid"]) / "build.log")

    def server_logs(self, name: str, served: str) -> str:
        entity = self._entity_by_name(name, served)
        return self._read(self._log_dir(name, entity["uid"]) / "server.log")

    @staticmethod
    def _read(path: Path, limit: int = 1 << 20) -> str:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return ""
        return data[-limit:].decode(errors="replace")

    def metrics(self, name: str) -> str:
        """Prometheus text exposition of the endpoint's request counts, errors and latency.

        The metric names follow Databricks' metrics-export page (request count, 4xx, 5xx,
        latency histogram); the label set is an assumption (one label, the served entity).
        """
        doc = self._require(name)
        names = [e["name"] for e in (doc.get("config") or {}).get("served_entities", [])]
        with self._lock:
            metrics = {n: self._metrics.get((name, n), EntityMetrics()) for n in names}
            metrics = {
                n: EntityMetrics(m.requests, m.errors_4xx, m.errors_5xx, m.latency_sum_ms, list(m.buckets))
                for n, m in metrics.items()
            }
        lines = []
        counters = (
            ("request_count_total", "Requests answered by the served entity.", "requests"),
            ("request_4xx_count_total", "Requests answered with a 4xx status.", "errors_4xx"),
            ("request_5xx_count_total", "Requests answered with a 5xx status.", "errors_5xx"),
        )
        for metric, help_text, attr in counters:
            lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} counter"]
            lines += [f'{metric}{{served_entity_name="{n}"}} {getattr(m, attr)}' for n, m in metrics.items()]
        lines += [
            "# HELP request_latency_ms Round-trip latency of requests (ms).",
            "# TYPE request_latency_ms histogram",
        ]
        for n, m in metrics.items():
            for bound, count in zip(LATENCY_BUCKETS_MS, m.buckets, strict=True):
                lines.append(f'request_latency_ms_bucket{{served_entity_name="{n}",le="{bound}"}} {count}')
            lines.append(f'request_latency_ms_bucket{{served_entity_name="{n}",le="+Inf"}} {m.requests}')
            lines.append(f'request_latency_ms_sum{{served_entity_name="{n}"}} {m.latency_sum_ms:.3f}')
            lines.append(f'request_latency_ms_count{{served_entity_name="{n}"}} {m.requests}')
        return "\n".join(lines) + "\n"

    # -- rendering ------------------------------------------------------------------------

    def _render_entity(self, entity: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in entity.items() if k != "uid"}
        if not out["environment_vars"]:
            del out["environment_vars"]
        state = dict(entity["state"])
        if state["deployment"] == READY and entity["scale_to_zero_enabled"]:
            proc = self._procs.get(entity["uid"])
            if proc is None or not proc.running:
                state["deployment_state_message"] = SCALED_TO_ZERO
        out["state"] = state
        return out

    def _render_config(self, config: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in config.items() if v is not None}
        out["served_entities"] = [self._render_entity(e) for e in config["served_entities"]]
        return out

    def _render(self, doc: dict[str, Any]) -> dict[str, Any]:
        config = doc.get("config")
        ready = config is not None and all(
            e["state"]["deployment"] == READY for e in config["served_entities"]
        )
        out = {
            "name": doc["name"],
            "id": doc["id"],
            "creator": doc["creator"],
            "creation_timestamp": doc["creation_timestamp"],
            "last_updated_timestamp": doc.get("last_updated_timestamp"),
            "description": doc.get("description"),
            "tags": doc.get("tags") or None,
            "state": {"ready": "READY" if ready else "NOT_READY", "config_update": doc["config_update"]},
            "permission_level": "CAN_MANAGE",
            "route_optimized": False,
        }
        if config is not None:
            out["config"] = self._render_config(config)
        if doc.get("pending_config"):
            out["pending_config"] = self._render_config(doc["pending_config"])
        return {k: v for k, v in out.items() if v is not None}

    # -- housekeeping ---------------------------------------------------------------------

    def _housekeeping(self) -> None:
        interval = max(0.2, min(5.0, self.idle_seconds / 4))
        while not self._stopping.wait(interval):
            try:
                self._scale_to_zero()
                if self.tables is not None:
                    self.tables.flush()
            except Exception:
                log.exception("serving housekeeping failed")

    def _scale_to_zero(self) -> None:
        idle_uids = set()
        for doc in self._all():
            for entity in (doc.get("config") or {}).get("served_entities", []):
                if entity["scale_to_zero_enabled"]:
                    idle_uids.add(entity["uid"])
        now = time.monotonic()
        for uid in idle_uids:
            proc = self._procs.get(uid)
            if proc is not None and proc.running and now - proc.last_used > self.idle_seconds:
                with proc.lock:
                    if now - proc.last_used > self.idle_seconds:
                        log.info(
                            "scaling served entity %s to zero after %.0f s idle", uid, now - proc.last_used
                        )
                        proc.stop()

    def flush(self) -> None:
        """Write captured requests to their inference tables now."""
        if self.tables is not None:
            self.tables.flush()

    def shutdown(self) -> None:
        self._stopping.set()
        self.flush()
        with self._lock:
            procs, self._procs = list(self._procs.values()), {}
        for proc in procs:
            proc.stop()
