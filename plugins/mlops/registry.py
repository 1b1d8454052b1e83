"""Registry procedures shared by the operators: lineage, alias moves with history, copies.

Tag keys use only letters, digits and underscores (``mlops_dag_id``): Unity Catalog rejects
``. , - = / :`` in tag keys, allows at most 50 tags per object and 1000 characters per value.

The history of an alias is one model-version tag per event, written on the version the alias
moved to, under a unique key ``mlops_history_<alias>_<epoch ms>_<random>``. MLflow has no
transactions, so a single JSON list updated read-modify-write would lose entries when two
promotions race; one tag per event never overwrites another promotion's entry. Keeping the
entries on versions (not on the registered model) bounds the tags per object: a version is
promoted a handful of times, a model hundreds. Each entry is a JSON object::

    {"action": "promote" | "rollback", "alias", "version", "previous_version", "status",
     "by", "at", "ts", "reason", "dag_id", "run_id", "task_id", "try_number", ...}

``status`` is "pending" (written before the alias moves), "applied" (alias moved and verified),
"failed" (the alias could not be moved) or "superseded" (another promotion moved the alias while
this one was applying). Only "applied" entries count for rollback.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mlops.exceptions import ConcurrentPromotionError, ModelRegistryError, ModelRegistryNotFoundError

if TYPE_CHECKING:
    from mlops.hooks import MlflowRegistryHook

TAG = "mlops_"
HISTORY = "mlops_history_"
EVALUATION_RUN_TAG = "mlops_evaluation_run_id"
COPY_EXPERIMENT = "/Shared/mlops-registry-copies"


# --------------------------------------------------------------------------- lineage


def key_part(text: str) -> str:
    """``text`` made safe inside a tag key on every registry (letters, digits, underscores)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", text)


def lineage_tags(context: Any) -> dict[str, str]:
    """Tags naming the DAG run and task try that acted on the registry."""
    ti = context["ti"]
    return {
        "mlops_dag_id": str(ti.dag_id),
        "mlops_run_id": str(ti.run_id),
        "mlops_task_id": str(ti.task_id),
        "mlops_map_index": str(getattr(ti, "map_index", -1)),
        "mlops_try_number": str(ti.try_number),
    }


def actor(context: Any) -> str:
    """Who acted: the user who triggered the DAG run, else the run type (scheduled, asset...)."""
    dag_run = context.get("dag_run")
    user = getattr(dag_run, "triggering_user_name", None)
    if user:
        return str(user)
    run_type = getattr(dag_run, "run_type", None)
    return f"airflow:{getattr(run_type, 'value', run_type) or 'unknown'}"


def same_task(tags: dict[str, str], lineage: dict[str, str]) -> bool:
    """True when ``tags`` were written by the same task instance (any try) as ``lineage``."""
    keys = ("mlops_dag_id", "mlops_run_id", "mlops_task_id", "mlops_map_index")
    return all(tags.get(k) == lineage.get(k) for k in keys)


# --------------------------------------------------------------------------- aliases and history


def alias_holder(hook: MlflowRegistryHook, model_name: str, alias: str) -> str | None:
    """The version ``alias`` points at, or None; the model itself must exist."""
    model = hook.get_registered_model(model_name)
    version = (model.aliases or {}).get(alias)
    return str(version) if version is not None else None


def read_history(hook: MlflowRegistryHook, model_name: str, alias: str | None = None) -> list[dict[str, Any]]:
    """History entries of ``model_name`` (of one ``alias`` when given), oldest first."""
    entries = []
    for mv in hook.search_model_versions(model_name):
        for key, value in (mv.tags or {}).items():
            if not key.startswith(HISTORY):
                continue
            try:
                entry = json.loads(value)
            except (TypeError, ValueError):
                continue
            if not isinstance(entry, dict) or (alias is not None and entry.get("alias") != alias):
                continue
            entry["key"] = key
            entries.append(entry)
    return sorted(entries, key=lambda e: (int(e.get("ts", 0)), e["key"]))


def _write_entry(hook: MlflowRegistryHook, model_name: str, entry: dict[str, Any]) -> None:
    body = {k: v for k, v in entry.items() if k != "key"}
    hook.set_model_version_tag(model_name, entry["version"], entry["key"], json.dumps(body, sort_keys=True))


def move_alias(
    hook: MlflowRegistryHook,
    model_name: str,
    alias: str,
    version: str,
    *,
    action: str,
    context: Any,
    reason: str = "",
    extra: dict[str, Any] | None = None,
    log: Any = None,
) -> dict[str, Any]:
    """
    Point ``alias`` at ``version`` and record it in the history; a no-op when it already does.

    Sequence: write a "pending" entry (with the previous holder), move the alias, mark the entry
    "applied", then read the alias and the entry back. If another promotion moved the alias in
    between, the entry becomes "superseded" and :class:`ConcurrentPromotionError` is raised, so
    the history always ends with the holder of the alias.
    """
    version = str(version)
    hook.require_aliases(model_name)
    hook.get_model_version(model_name, version)  # fails with the list of versions if unknown
    lineage = lineage_tags(context)
    current = alias_holder(hook, model_name, alias)
    history = read_history(hook, model_name, alias)
    if current == version:
        for entry in history:
            if (
                entry.get("status") == "pending"
                and entry.get("version") == version
                and same_task({f"mlops_{k}": str(v) for k, v in entry.items()}, lineage)
            ):
                entry["status"] = "applied"  # a previous try moved the alias, then died
                _write_entry(hook, model_name, entry)
        previous = next(
            (
                e.get("previous_version")
                for e in reversed(history)
                if e.get("status") == "applied" and e.get("version") == version
            ),
            None,
        )
        if log:
            log.info(
                "Alias %s of model %s already points at version %s: nothing to move.",
                alias,
                model_name,
                version,
            )
        return {"model_name": model_name, "version": version, "previous_version": previous, "changed": False}

    now = time.time()
    ts = int(now * 1000)
    entry: dict[str, Any] = {
        "key": f"{HISTORY}{key_part(alias)}_{ts:013d}_{uuid.uuid4().hex[:8]}",
        "ts": ts,
        "action": action,
        "alias": alias,
        "version": version,
        "previous_version": current,
        "status": "pending",
        "by": actor(context),
        "at": datetime.fromtimestamp(now, tz=UTC).isoformat(timespec="seconds"),
        "reason": (reason or "")[:200],  # the whole entry must fit a tag value (1000 chars on UC)
        **{k.removeprefix(TAG): v for k, v in lineage.items()},
        **(extra or {}),
    }
    _write_entry(hook, model_name, entry)
    try:
        hook.set_registered_model_alias(model_name, alias, version)
    except Exception as exc:
        entry["status"] = "failed"
        entry["error"] = str(exc)[:200]
        try:
            _write_entry(hook, model_name, entry)
        except Exception:
            pass  # the alias did not move; the pending entry is ignored by readers anyway
        raise
    entry["status"] = "applied"
    _write_entry(hook, model_name, entry)

    holder = alias_holder(hook, model_name, alias)
    if holder != version:
        entry["status"] = "superseded"
        entry["superseded_by"] = holder
        _write_entry(hook, model_name, entry)
        raise ConcurrentPromotionError(
            f"Alias {alias!r} of model {model_name!r} was moved to version {holder} by a concurrent "
            f"promotion right after this task moved it to version {version}. The history records "
            f"both (entry {entry['key']} on version {version} is marked superseded). Re-run this task if version {version} should win."
        )
    stored = (hook.get_model_version(model_name, version).tags or {}).get(entry["key"])
    if not stored or json.loads(stored).get("status") != "applied":
        raise ModelRegistryError(
            f"Alias {alias!r} of model {model_name!r} now points at version {version}, but history "
            f"entry {entry['key']} could not be read back from that version; check the registry's tag "
            "limits and re-run."
        )
    # Convenience for people reading the registry UI; the history entries are the record.
    hook.set_registered_model_tag(model_name, f"{TAG}previous_{key_part(alias)}", current or "none")
    if log:
        log.info(
            "Moved alias %s of model %s from version %s to version %s (%s by %s).",
            alias,
            model_name,
            current,
            version,
            action,
            entry["by"],
        )
    return {"model_name": model_name, "version": version, "previous_version": current, "changed": True}


def rollback_target(history: list[dict[str, Any]], current: str | None) -> str | None:
    """The holder before the promotion that installed ``current`` (rollbacks are not undone)."""
    for entry in reversed(history):
        if (
            entry.get("status") == "applied"
            and entry.get("action") == "promote"
            and entry.get("version") == current
        ):
            return entry.get("previous_version")
    return None


def decided_by_earlier_try(
    history: list[dict[str, Any]], lineage: dict[str, str], action: str
) -> dict[str, Any] | None:
    """The history entry in which an earlier try of this task instance chose its ``action`` target.

    The first try writes its history entry ("pending") before it moves the alias, so a retry or
    a cleared task reads the target back instead of recomputing it from a history it has already
    changed (which would walk the alias one more step back on every try).
    """
    for entry in history:
        if entry.get("action") == action and same_task(
            {f"{TAG}{k}": str(v) for k, v in entry.items()}, lineage
        ):
            return entry
    return None


def describe_history(history: list[dict[str, Any]], limit: int = 10) -> str:
    rows = [
        f"{e.get('at')} {e.get('action')} -> v{e.get('version')} (from v{e.get('previous_version')}, {e.get('status')})"
        for e in history[-limit:]
    ]
    return "; ".join(rows) or "no history"


# --------------------------------------------------------------------------- registering


def resolve_source(hook: MlflowRegistryHook, model_uri: str) -> dict[str, str | None]:
    """The registry ``source``, ``run_id`` and ``model_id`` for a ``runs:/``, ``models:/m-`` or plain URI."""
    if model_uri.startswith("runs:/"):
        rest = model_uri[len("runs:/") :]
        run_id, _, path = rest.partition("/")
        path = path.strip("/")
        if not run_id or not path:
            raise ModelRegistryError(f"model_uri {model_uri!r} must look like runs:/<run_id>/<artifact path>")
        try:
            run = hook.get_run(run_id)
        except Exception as exc:
            raise ModelRegistryNotFoundError(
                f"Run {run_id} of model_uri {model_uri!r} not found on {hook.tracking_uri}: {exc}"
            ) from exc
        outputs = getattr(run, "outputs", None)
        for output in getattr(outputs, "model_outputs", None) or []:
            logged = hook.get_logged_model(output.model_id)
            if logged.name == path:
                return {"source": f"models:/{logged.model_id}", "run_id": run_id, "model_id": logged.model_id}
        return {"source": f"{run.info.artifact_uri}/{path}", "run_id": run_id, "model_id": None}
    if model_uri.startswith("models:/m-"):
        model_id = model_uri[len("models:/") :].strip("/")
        logged = hook.get_logged_model(model_id)
        return {"source": model_uri, "run_id": logged.source_run_id, "model_id": model_id}
    return {"source": model_uri, "run_id": None, "model_id": None}


def ensure_registered_model(hook: MlflowRegistryHook, name: str) -> None:
    try:
        hook.create_registered_model(name)
    except Exception as exc:
        if getattr(exc, "error_code", None) not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise


# --------------------------------------------------------------------------- copying


def copy_tags(source_label: str, model_name: str, version: str) -> dict[str, str]:
    return {
        "mlops_copied_from_registry": source_label,
        "mlops_copied_from_model": model_name,
        "mlops_copied_from_version": str(version),
    }


def find_copy(
    target: MlflowRegistryHook, target_name: str, wanted: dict[str, str], same_registry_source: str | None
) -> Any:
    """An existing copy in ``target_name`` carrying the ``wanted`` tags (or that source), if any."""
    try:
        versions = target.search_model_versions(target_name)
    except Exception as exc:
        if getattr(exc, "error_code", None) in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
            return None
        raise
    for mv in sorted(versions, key=lambda v: int(v.version)):
        tags = mv.tags or {}
        if all(tags.get(k) == v for k, v in wanted.items()):
            return mv
        if same_registry_source and mv.source == same_registry_source:
            return mv
    return None


def copy_version(
    source: MlflowRegistryHook,
    target: MlflowRegistryHook,
    model_name: str,
    version: str,
    target_name: str,
    *,
    context: Any,
    same_registry: bool,
    await_ready_timeout: float,
    log: Any,
) -> Any:
    """Copy a version into ``target_name`` once: a re-run finds the earlier copy by its tags."""
    src = source.get_model_version(model_name, version)
    wanted = copy_tags(source.registry_label, model_name, version)
    src_uri = f"models:/{model_name}/{version}"
    existing = find_copy(target, target_name, wanted, src_uri if same_registry else None)
    if existing is not None:
        log.info(
            "Version %s of %s is already copied to version %s of %s: reusing it.",
            version,
            model_name,
            existing.version,
            target_name,
        )
        for key, value in wanted.items():
            if (existing.tags or {}).get(key) != value:
                target.set_model_version_tag(target_name, existing.version, key, value)
        return target.wait_until_ready(target_name, existing.version, await_ready_timeout)

    if same_registry:
        copied = source.copy_model_version(src_uri, target_name)
        for key, value in {**wanted, **lineage_tags(context)}.items():
            target.set_model_version_tag(target_name, copied.version, key, value)
        log.info("Copied %s to version %s of %s (same registry).", src_uri, copied.version, target_name)
        return target.wait_until_ready(target_name, copied.version, await_ready_timeout)

    # Across registries MLflow cannot copy: download, upload into a run of the target, register.
    download_uri = source.get_model_version_download_uri(model_name, version)
    run_id = None
    try:
        with tempfile.TemporaryDirectory(prefix="mlops-copy-") as tmp:
            local = source.download_artifacts(download_uri, tmp)
            if not os.path.isfile(os.path.join(local, "MLmodel")):
                raise ModelRegistryError(
                    f"no MLmodel file under {download_uri} (downloaded: {sorted(os.listdir(local))[:10]})"
                )
            metrics: dict[str, float] = {}
            params: dict[str, str] = {}
            if src.run_id:
                try:
                    run = source.get_run(src.run_id)
                    metrics, params = dict(run.data.metrics), dict(run.data.params)
                except Exception as exc:  # lineage is best effort; the model itself is not
                    log.warning(
                        "Could not read source run %s of %s v%s: %s", src.run_id, model_name, version, exc
                    )
            experiment = target.get_experiment_by_name(COPY_EXPERIMENT)
            experiment_id = (
                experiment.experiment_id if experiment else target.create_experiment(COPY_EXPERIMENT)
            )
            run_tags = {
                **wanted,
                **lineage_tags(context),
                "mlflow.runName": f"copy-{model_name}-v{version}",
                "mlops_source_run_id": src.run_id or "",
            }
            run = target.create_run(experiment_id, tags=run_tags)
            run_id = run.info.run_id
            target.log_artifacts(run_id, local, "model")
            if metrics or params:
                target.log_batch(run_id, metrics, params)
            target.set_terminated(run_id)
        ensure_registered_model(target, target_name)
        tags = {**(src.tags or {}), **wanted, "mlops_source_run_id": src.run_id or ""}
        created = target.create_model_version(
            target_name, f"{run.info.artifact_uri}/model", run_id=run_id, tags=tags
        )
    except Exception as exc:
        if run_id:
            try:
                target.set_terminated(run_id, "FAILED")
            except Exception:
                pass
        raise ModelRegistryError(
            f"Copying version {version} of {model_name!r} from {source.registry_label} to {target_name!r} "
            f"in {target.registry_label} failed: {exc}. Nothing was promoted; fix the cause and re-run."
        ) from exc
    log.info(
        "Copied version %s of %s from %s to version %s of %s in %s.",
        version,
        model_name,
        source.registry_label,
        created.version,
        target_name,
        target.registry_label,
    )
    return target.wait_until_ready(target_name, created.version, await_ready_timeout)
