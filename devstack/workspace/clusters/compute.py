"""Compute specs checked as Azure Databricks checks them: runtimes, node types, sizes, modes, policies.

One set of rules for every cluster spec: all-purpose clusters (clusters/create and edit) and job
clusters (``new_cluster`` of a task, ``job_clusters`` of a job), which jobs/create, jobs/reset,
jobs/update and runs/submit check when they receive them, as Databricks does. A bad spec is
answered with 400 INVALID_PARAMETER_VALUE naming the field and the value.

No HTTP here: :func:`check_cluster_spec` and :func:`check_job_compute` take plain dicts, and
optional lookups of the workspace's instance pools and cluster policies.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

from devstack.workspace.http import ApiError, invalid

# The runtimes clusters/spark-versions lists (a current Azure workspace's LTS lines).
SPARK_VERSIONS = [
    {"key": "16.4.x-scala2.12", "name": "16.4 LTS (includes Apache Spark 3.5.2, Scala 2.12)"},
    {"key": "16.4.x-cpu-ml-scala2.12", "name": "16.4 LTS ML (includes Apache Spark 3.5.2, Scala 2.12)"},
    {"key": "16.4.x-gpu-ml-scala2.12", "name": "16.4 LTS ML (includes Apache Spark 3.5.2, GPU, Scala 2.12)"},
    {"key": "16.4.x-photon-scala2.12", "name": "16.4 LTS Photon (includes Apache Spark 3.5.2, Scala 2.12)"},
    {"key": "15.4.x-scala2.12", "name": "15.4 LTS (includes Apache Spark 3.5.0, Scala 2.12)"},
    {"key": "15.4.x-cpu-ml-scala2.12", "name": "15.4 LTS ML (includes Apache Spark 3.5.0, Scala 2.12)"},
    {"key": "15.4.x-gpu-ml-scala2.12", "name": "15.4 LTS ML (includes Apache Spark 3.5.0, GPU, Scala 2.12)"},
    {"key": "15.4.x-photon-scala2.12", "name": "15.4 LTS Photon (includes Apache Spark 3.5.0, Scala 2.12)"},
    {"key": "14.3.x-scala2.12", "name": "14.3 LTS (includes Apache Spark 3.5.0, Scala 2.12)"},
    {"key": "14.3.x-cpu-ml-scala2.12", "name": "14.3 LTS ML (includes Apache Spark 3.5.0, Scala 2.12)"},
    {"key": "13.3.x-scala2.12", "name": "13.3 LTS (includes Apache Spark 3.4.1, Scala 2.12)"},
    {"key": "13.3.x-cpu-ml-scala2.12", "name": "13.3 LTS ML (includes Apache Spark 3.4.1, Scala 2.12)"},
]
SPARK_VERSION_KEYS = frozenset(v["key"] for v in SPARK_VERSIONS)
DEFAULT_SPARK_VERSION = "15.4.x-scala2.12"


def _node(node_type_id, memory_gb, cores, category, disks, disk_gb, gpus=0, description=None, order=0):
    family = node_type_id.split("_")[1]
    return {
        "node_type_id": node_type_id,
        "memory_mb": memory_gb * 1024,
        "num_cores": float(cores),
        "description": description or node_type_id,
        "instance_type_id": node_type_id,
        "category": category,
        "num_gpus": gpus,
        "is_deprecated": False,
        "is_hidden": False,
        "is_io_cache_enabled": family.startswith("L") or "ds_v5" in node_type_id,
        "photon_driver_capable": gpus == 0,
        "photon_worker_capable": gpus == 0,
        "support_port_forwarding": True,
        "support_ebs_volumes": False,
        "display_order": order,
        "node_instance_type": {
            "instance_type_id": node_type_id,
            "local_disks": disks,
            "local_disk_size_gb": disk_gb,
        },
    }


# The Azure VM sizes clusters/list-node-types lists (memory and cores as Azure publishes them).
NODE_TYPES = [
    _node("Standard_DS3_v2", 14, 4, "General Purpose", 1, 28, order=1),
    _node("Standard_DS4_v2", 28, 8, "General Purpose", 1, 56, order=2),
    _node("Standard_DS5_v2", 56, 16, "General Purpose", 1, 112, order=3),
    _node("Standard_D4ds_v5", 16, 4, "General Purpose", 1, 150, order=4),
    _node("Standard_D8ds_v5", 32, 8, "General Purpose", 1, 300, order=5),
    _node("Standard_D16ds_v5", 64, 16, "General Purpose", 1, 600, order=6),
    _node("Standard_E4ds_v4", 32, 4, "Memory Optimized", 1, 150, order=7),
    _node("Standard_E8ds_v4", 64, 8, "Memory Optimized", 1, 300, order=8),
    _node("Standard_E16ds_v4", 128, 16, "Memory Optimized", 1, 600, order=9),
    _node("Standard_F4s", 8, 4, "Compute Optimized", 1, 16, order=10),
    _node("Standard_F8s", 16, 8, "Compute Optimized", 1, 32, order=11),
    _node("Standard_L8s_v2", 64, 8, "Storage Optimized", 1, 80, order=12),
    _node("Standard_NC6s_v3", 112, 6, "GPU Accelerated", 1, 736, gpus=1, order=13),
    _node("Standard_NC4as_T4_v3", 28, 4, "GPU Accelerated", 1, 180, gpus=1, order=14),
]
NODE_TYPE_IDS = frozenset(n["node_type_id"] for n in NODE_TYPES)
DEFAULT_NODE_TYPE = "Standard_DS3_v2"

DATA_SECURITY_MODES = (
    "NONE",
    "SINGLE_USER",
    "USER_ISOLATION",
    "LEGACY_TABLE_ACL",
    "LEGACY_PASSTHROUGH",
    "LEGACY_SINGLE_USER",
    "LEGACY_SINGLE_USER_STANDARD",
    "DATA_SECURITY_MODE_AUTO",
    "DATA_SECURITY_MODE_STANDARD",
    "DATA_SECURITY_MODE_DEDICATED",
)
# Databricks' limits for autotermination_minutes (0 turns it off).
AUTOTERMINATION_RANGE = (10, 43200)
# Init script locations Azure Databricks runs; dbfs is end of life, s3/gcs belong to other clouds.
INIT_SCRIPT_KINDS = ("workspace", "volumes", "abfss", "file")

PoolLookup = Callable[[str], "dict[str, Any] | None"]
PolicyLookup = Callable[[str], "dict[str, Any] | None"]


def _field(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def check_cluster_spec(
    spec: Any,
    *,
    where: str = "",
    pool: PoolLookup | None = None,
    policy: PolicyLookup | None = None,
    job_cluster: bool = False,
) -> dict[str, Any]:
    """Check one cluster spec and return it with its policy's fixed (and default) values applied.

    :param spec: the cluster attributes (clusters/create body, or a ``new_cluster``).
    :param where: the field path to name in errors (``tasks[0].new_cluster``); "" for clusters/create.
    :param pool: finds an instance pool by id (None: every pool id is unknown).
    :param policy: finds a cluster policy by id (None: every policy id is unknown).
    :param job_cluster: a job's cluster: a SINGLE_USER one without ``single_user_name`` is
        assigned to the job's run-as identity, as Databricks does, instead of being refused.
    :raises ApiError: 400 INVALID_PARAMETER_VALUE naming the field, as Databricks answers.
    """
    if not isinstance(spec, dict):
        raise invalid(f"Invalid value for field {where or 'cluster'}: expected an object")
    spec = copy.deepcopy(spec)
    policy_id = spec.get("policy_id")
    if policy_id:
        found = policy(policy_id) if policy else None
        if found is None:
            raise invalid(f"Cluster policy {policy_id} does not exist ({_field(where, 'policy_id')}).")
        spec = apply_policy(found["definition"], spec, defaults=bool(spec.get("apply_policy_default_values")))

    version = spec.get("spark_version")
    if not version:
        raise invalid(f"Missing required field: {_field(where, 'spark_version')}")
    if version not in SPARK_VERSION_KEYS:
        raise invalid(
            f"Invalid spark version {version} ({_field(where, 'spark_version')}); use one of "
            f"clusters/spark-versions, e.g. {DEFAULT_SPARK_VERSION}."
        )

    pool_id = spec.get("instance_pool_id")
    pool_node = None
    if pool_id:
        found = pool(pool_id) if pool else None
        if found is None:
            raise invalid(f"Instance pool {pool_id} does not exist ({_field(where, 'instance_pool_id')}).")
        pool_node = found["node_type_id"]
        if spec.get("node_type_id") not in (None, pool_node):
            raise invalid(
                f"Invalid value for field {_field(where, 'node_type_id')}: the cluster uses instance pool "
                f"{pool_id}, whose node type is {pool_node}; leave node_type_id out."
            )
        spec["node_type_id"] = pool_node  # a pool's clusters run on its node type
    driver_pool_id = spec.get("driver_instance_pool_id")
    if driver_pool_id and (pool is None or pool(driver_pool_id) is None):
        raise invalid(
            f"Instance pool {driver_pool_id} does not exist ({_field(where, 'driver_instance_pool_id')})."
        )
    if driver_pool_id and pool is not None:
        spec["driver_node_type_id"] = pool(driver_pool_id)["node_type_id"]
    if driver_pool_id and not pool_id:
        raise invalid(
            f"Invalid value for field {_field(where, 'driver_instance_pool_id')}: a driver pool needs "
            "instance_pool_id for the workers too."
        )
    node = spec.get("node_type_id") or pool_node
    if not node:
        raise invalid(f"Missing required field: {_field(where, 'node_type_id')} (or instance_pool_id)")
    for name in ("node_type_id", "driver_node_type_id"):
        value = spec.get(name)
        if value is not None and value not in NODE_TYPE_IDS:
            raise invalid(
                f"Node type {value} is not supported ({_field(where, name)}). Supported node types: "
                f"{', '.join(sorted(NODE_TYPE_IDS))}."
            )

    _check_size(spec, where)
    _check_security_mode(spec, where, job_cluster)
    minutes = spec.get("autotermination_minutes")
    if minutes is not None:
        low, high = AUTOTERMINATION_RANGE
        if (
            not isinstance(minutes, int)
            or isinstance(minutes, bool)
            or not (minutes == 0 or low <= minutes <= high)
        ):
            raise invalid(
                f"Invalid value for field {_field(where, 'autotermination_minutes')}: {minutes!r}; "
                f"give 0 (never) or between {low} and {high} minutes."
            )
    _check_init_scripts(spec.get("init_scripts"), where)
    for name in ("spark_conf", "spark_env_vars", "custom_tags"):
        if spec.get(name) is not None and not isinstance(spec[name], dict):
            raise invalid(f"Invalid value for field {_field(where, name)}: expected an object")
    return spec


def _count(value: Any) -> int | None:
    """A worker count as Databricks reads it: an integer, or a string of one (the provider's
    operators send every number of a run spec as a string, and the API's JSON parsing takes
    "1" for an integer field as proto3 JSON does); None for anything else, negatives included."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _check_size(spec: dict[str, Any], where: str) -> None:
    autoscale = spec.get("autoscale")
    workers = spec.get("num_workers")
    if workers is not None and _count(workers) is None:
        raise invalid(f"Invalid value for field {_field(where, 'num_workers')}: {workers!r}; expected >= 0")
    if autoscale is None:
        return
    if not isinstance(autoscale, dict):
        raise invalid(f"Invalid value for field {_field(where, 'autoscale')}: expected an object")
    low, high = _count(autoscale.get("min_workers")), _count(autoscale.get("max_workers"))
    for name, value in (("min_workers", low), ("max_workers", high)):
        if value is None:
            raise invalid(
                f"Invalid value for field {_field(where, 'autoscale.' + name)}: "
                f"{autoscale.get(name)!r}; expected an integer >= 0"
            )
    if high < 1 or high < low:
        raise invalid(
            f"Invalid value for field {_field(where, 'autoscale')}: max_workers ({high}) must be at least 1 "
            f"and at least min_workers ({low})."
        )


def _check_security_mode(spec: dict[str, Any], where: str, job_cluster: bool) -> None:
    mode = spec.get("data_security_mode")
    if mode is None:
        return
    if mode not in DATA_SECURITY_MODES:
        raise invalid(
            f"Invalid value for field {_field(where, 'data_security_mode')}: {mode!r}; expected one of "
            f"{', '.join(DATA_SECURITY_MODES)}"
        )
    single = mode in ("SINGLE_USER", "LEGACY_SINGLE_USER", "LEGACY_SINGLE_USER_STANDARD")
    if single and not job_cluster and not spec.get("single_user_name"):
        raise invalid(
            f"Missing required field: {_field(where, 'single_user_name')} (data_security_mode {mode} "
            "needs the user or group the cluster is assigned to)"
        )


def _check_init_scripts(scripts: Any, where: str) -> None:
    if scripts is None:
        return
    field = _field(where, "init_scripts")
    if not isinstance(scripts, list):
        raise invalid(f"Invalid value for field {field}: expected an array")
    for i, script in enumerate(scripts):
        kinds = list(script) if isinstance(script, dict) else []
        if len(kinds) != 1:
            raise invalid(
                f"Invalid value for field {field}[{i}]: give exactly one of {', '.join(INIT_SCRIPT_KINDS)}"
            )
        kind = kinds[0]
        if kind == "dbfs":
            raise invalid(
                f"Invalid value for field {field}[{i}]: init scripts on DBFS are end-of-life; store the "
                "script as a workspace file or in a Unity Catalog volume."
            )
        if kind not in INIT_SCRIPT_KINDS:
            raise invalid(
                f"Invalid value for field {field}[{i}]: {kind} init scripts are not available on Azure "
                f"Databricks; use one of {', '.join(INIT_SCRIPT_KINDS)}"
            )
        body = script[kind]
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("destination"), str)
            or not body["destination"]
        ):
            raise invalid(f"Missing required field: {field}[{i}].{kind}.destination")
        if kind == "volumes" and not body["destination"].startswith("/Volumes/"):
            raise invalid(
                f"Invalid value for field {field}[{i}].volumes.destination: expected a /Volumes/... path"
            )


def check_job_compute(
    settings: dict[str, Any], *, pool: PoolLookup | None = None, policy: PolicyLookup | None = None
) -> None:
    """Check every cluster spec of a job's settings (or a runs/submit body), as jobs/create,
    jobs/reset, jobs/update and runs/submit do before accepting them.

    Checks ``job_clusters[*].new_cluster``, ``tasks[*].new_cluster`` and a legacy top-level
    ``new_cluster``; raises 400 INVALID_PARAMETER_VALUE naming the field.
    """
    for i, cluster in enumerate(settings.get("job_clusters") or []):
        if isinstance(cluster, dict) and "new_cluster" in cluster:
            check_cluster_spec(
                cluster["new_cluster"],
                where=f"job_clusters[{i}].new_cluster",
                pool=pool,
                policy=policy,
                job_cluster=True,
            )
    for i, task in enumerate(settings.get("tasks") or []):
        if isinstance(task, dict) and task.get("new_cluster") is not None:
            check_cluster_spec(
                task["new_cluster"],
                where=f"tasks[{i}].new_cluster",
                pool=pool,
                policy=policy,
                job_cluster=True,
            )
        loop = task.get("for_each_task") if isinstance(task, dict) else None
        nested = loop.get("task") if isinstance(loop, dict) else None
        if isinstance(nested, dict) and nested.get("new_cluster") is not None:
            where = f"tasks[{i}].for_each_task.task.new_cluster"
            check_cluster_spec(nested["new_cluster"], where=where, pool=pool, policy=policy, job_cluster=True)
    if settings.get("new_cluster") is not None:
        check_cluster_spec(
            settings["new_cluster"], where="new_cluster", pool=pool, policy=policy, job_cluster=True
        )


# ---------------------------------------------------------------------- cluster policies

POLICY_TYPES = ("fixed", "forbidden", "allowlist", "blocklist", "regex", "range", "unlimited")
_MAP_ATTRIBUTES = ("spark_conf", "spark_env_vars", "custom_tags")


def check_policy_definition(definition: Any) -> dict[str, Any]:
    """Parse a policy definition (a JSON object of attribute path -> rule) or fail naming the rule."""
    import json

    if isinstance(definition, str):
        try:
            definition = json.loads(definition)
        except ValueError as exc:
            raise invalid(f"Invalid value for field definition: not valid JSON ({exc})") from None
    if not isinstance(definition, dict):
        raise invalid("Invalid value for field definition: expected a JSON object of attribute rules")
    for path, rule in definition.items():
        if not isinstance(rule, dict) or rule.get("type") not in POLICY_TYPES:
            raise invalid(
                f"Invalid value for field definition: the rule for {path} needs a type, one of {', '.join(POLICY_TYPES)}"
            )
        kind = rule["type"]
        if kind == "fixed" and "value" not in rule:
            raise invalid(f"Invalid value for field definition: the fixed rule for {path} needs a value")
        if kind in ("allowlist", "blocklist") and not isinstance(rule.get("values"), list):
            raise invalid(
                f"Invalid value for field definition: the {kind} rule for {path} needs values (an array)"
            )
        if kind == "regex":
            try:
                re.compile(str(rule.get("pattern", "")))
            except re.error as exc:
                raise invalid(f"Invalid value for field definition: bad pattern for {path}: {exc}") from None
    return definition


_ABSENT = object()


def _path_parts(path: str) -> list[str]:
    head, _, rest = path.partition(".")
    if head in _MAP_ATTRIBUTES and rest:
        return [head, rest]  # spark_conf.spark.databricks.x: the key keeps its dots
    return path.split(".")


def _get(spec: dict[str, Any], path: str) -> Any:
    node: Any = spec
    for part in _path_parts(path):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return _ABSENT
    return _ABSENT if node is None else node


def _set(spec: dict[str, Any], path: str, value: Any) -> None:
    """Set the attribute at ``path``; a number in it indexes an array (``init_scripts.0...``),
    which is made or grown as needed. A path that an existing value cannot follow is left alone."""
    parts = _path_parts(path)
    node: Any = spec
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        empty: Any = None if last else ([] if parts[i + 1].isdigit() else {})
        if isinstance(node, list):
            if not part.isdigit():
                return
            index = int(part)
            while len(node) <= index:
                node.append({})
            if last:
                node[index] = value
            elif not isinstance(node[index], type(empty)):
                node[index] = empty
        else:
            if last:
                node[part] = value
            elif not isinstance(node.get(part), type(empty)):
                node[part] = empty
        if not last:
            node = node[index] if isinstance(node, list) else node[part]


def _show(value: Any) -> str:
    import json

    return json.dumps(value) if not isinstance(value, str) else value


def apply_policy(definition: dict[str, Any], spec: dict[str, Any], *, defaults: bool) -> dict[str, Any]:
    """``spec`` with the policy's fixed values (and, with ``defaults``, its default values) filled
    in; every violated rule is named in one 400 INVALID_PARAMETER_VALUE, as Databricks does."""
    spec = copy.deepcopy(spec)
    errors: list[str] = []
    for path, rule in definition.items():
        if "*" in path:
            continue  # wildcard rules (init_scripts.*.volumes.destination) are not modelled
        kind = rule["type"]
        value = _get(spec, path)
        if value is _ABSENT:
            if kind == "fixed":
                _set(spec, path, rule["value"])
            elif "defaultValue" in rule and defaults:
                _set(spec, path, rule["defaultValue"])
            elif kind not in ("forbidden", "fixed") and not rule.get("isOptional", kind == "blocklist"):
                errors.append(f"Validation failed for {path}, the value must be present")
            continue
        message = _violation(kind, rule, value)
        if message:
            errors.append(f"Validation failed for {path}, {message} (is {_show(value)})")
    if errors:
        raise ApiError(400, "INVALID_PARAMETER_VALUE", "Cluster validation error: " + "; ".join(errors))
    return spec


def _violation(kind: str, rule: dict[str, Any], value: Any) -> str | None:
    if kind == "fixed":
        return None if value == rule["value"] else f"the value must be {_show(rule['value'])}"
    if kind == "forbidden":
        return "the value must not be present"
    if kind == "allowlist":
        return None if value in rule["values"] else f"the value must be one of {_show(rule['values'])}"
    if kind == "blocklist":
        return f"the value must not be one of {_show(rule['values'])}" if value in rule["values"] else None
    if kind == "regex":
        pattern = str(rule.get("pattern", ""))
        return None if re.fullmatch(pattern, str(value)) else f"the value must match the regex {pattern}"
    if kind == "range":
        try:
            number = float(value)
        except (TypeError, ValueError):
            return "the value must be a number"
        if "minValue" in rule and number < float(rule["minValue"]):
            return f"the value must be at least {rule['minValue']}"
        if "maxValue" in rule and number > float(rule["maxValue"]):
            return f"the value must be at most {rule['maxValue']}"
    return None
