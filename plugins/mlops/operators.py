"""Operators for MLflow model-registry transitions: register, alias, promote, gate, roll back.

All of them are idempotent: a retry or a re-run of the same DAG run leaves the registry as one
successful run would. None of them ever deletes a model version.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from mlops.exceptions import ModelRegistryError, ModelRegistryNotFoundError
from mlops.gate import GateRuleError, evaluate, parse_metrics, parse_rules, render_table
from mlops.hooks import MlflowRegistryHook
from mlops.registry import (
    EVALUATION_RUN_TAG,
    alias_holder,
    copy_version,
    decided_by_earlier_try,
    describe_history,
    ensure_registered_model,
    lineage_tags,
    move_alias,
    read_history,
    resolve_source,
    rollback_target,
    same_task,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

LEGACY_STAGES = ("None", "Staging", "Production", "Archived")


def _is_template(value: Any) -> bool:
    """True when ``value`` (or anything inside it) will only be known after rendering."""
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, dict):
        return any(_is_template(k) or _is_template(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_is_template(v) for v in value)
    return not isinstance(value, int | float | bool | type(None))


def _loads(value: Any) -> Any:
    """A rendered template: JSON text, a Python literal (XCom of a dict) or the value itself."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not text or text == "None":
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return value


def _required(value: Any, name: str, operator: str) -> None:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError(f"{operator}: {name} is required")


def _version_str(value: Any, what: str) -> str:
    text = str(value).strip() if value is not None else ""
    if not text.isdigit():
        raise ModelRegistryError(f"{what} must be a model version number, got {value!r}")
    return text


class _RegistryOperator(BaseOperator):
    """Connection arguments and the lazily created hook shared by the registry operators."""

    def __init__(
        self,
        *,
        mlflow_conn_id: str = MlflowRegistryHook.default_conn_name,
        databricks_conn_id: str | None = None,
        registry_uri: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.mlflow_conn_id = mlflow_conn_id
        self.databricks_conn_id = databricks_conn_id
        self.registry_uri = registry_uri

    @cached_property
    def hook(self) -> MlflowRegistryHook:
        return MlflowRegistryHook(
            self.mlflow_conn_id, databricks_conn_id=self.databricks_conn_id, registry_uri=self.registry_uri
        )


class RegisterModelVersionOperator(_RegistryOperator):
    """
    Register a logged model as a new version, wait until READY and tag its lineage.

    A retry of the same task instance finds the version it already created (same source and
    same dag_id / run_id / task_id tags) instead of creating a second one. Returns the version.

    :param model_uri: the logged model: ``runs:/<run_id>/<path>``, ``models:/m-<id>`` or an artifact URI.
    :param model_name: registered model name, e.g. ``dev.ml.diabetes``; created when missing.
    :param tags: extra version tags (lineage tags are always added).
    :param await_ready_timeout: seconds to wait for the version to become READY.
    :param mlflow_conn_id: connection of the MLflow tracking server.
    :param databricks_conn_id: connection of a Databricks workspace (instead of mlflow_conn_id).
    :param registry_uri: registry URI override (``databricks``, ``databricks-uc``...).
    """

    template_fields: Sequence[str] = ("model_uri", "model_name", "tags")
    ui_color = "#d5e8f7"

    def __init__(
        self,
        *,
        model_uri: str,
        model_name: str,
        tags: dict[str, str] | None = None,
        await_ready_timeout: float = 300,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model_uri = model_uri
        self.model_name = model_name
        self.tags = tags
        self.await_ready_timeout = await_ready_timeout
        _required(model_uri, "model_uri", type(self).__name__)
        _required(model_name, "model_name", type(self).__name__)
        if await_ready_timeout < 0:
            raise ValueError(
                f"{type(self).__name__}: await_ready_timeout must be >= 0, got {await_ready_timeout}"
            )

    def execute(self, context: Context) -> str:
        hook = self.hook
        lineage = lineage_tags(context)
        extra = _loads(self.tags) or {}
        if not isinstance(extra, dict):
            raise ModelRegistryError(f"tags must be a mapping, got {self.tags!r}")
        resolved = resolve_source(hook, self.model_uri)
        ensure_registered_model(hook, self.model_name)
        for mv in hook.search_model_versions(self.model_name):
            tags = mv.tags or {}
            if tags.get("mlops_model_uri") == self.model_uri and same_task(tags, lineage):
                self.log.info(
                    "Version %s of %s was registered from %s by an earlier try of this task: reusing it.",
                    mv.version,
                    self.model_name,
                    self.model_uri,
                )
                return str(
                    hook.wait_until_ready(self.model_name, mv.version, self.await_ready_timeout).version
                )
        tags = {**{str(k): str(v) for k, v in extra.items()}, **lineage, "mlops_model_uri": self.model_uri}
        if resolved["run_id"]:
            tags["mlops_source_run_id"] = resolved["run_id"]
        mv = hook.create_model_version(
            self.model_name,
            resolved["source"],
            run_id=resolved["run_id"],
            tags=tags,
            model_id=resolved["model_id"],
        )
        self.log.info(
            "Registered %s as version %s of %s in %s; waiting until READY.",
            self.model_uri,
            mv.version,
            self.model_name,
            hook.registry_label,
        )
        return str(hook.wait_until_ready(self.model_name, mv.version, self.await_ready_timeout).version)


class SetModelAliasOperator(_RegistryOperator):
    """
    Point ``alias`` at ``version`` (no-op when it already does). Returns the version.

    :param model_name: registered model name.
    :param alias: alias to set, e.g. ``challenger``.
    :param version: version number (templated, e.g. from the register task's XCom).
    """

    template_fields: Sequence[str] = ("model_name", "alias", "version")

    def __init__(self, *, model_name: str, alias: str, version: str | int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model_name = model_name
        self.alias = alias
        self.version = version
        for name in ("model_name", "alias", "version"):
            _required(getattr(self, name), name, type(self).__name__)

    def execute(self, context: Context) -> str:
        version = _version_str(self.version, "version")
        self.hook.require_aliases(self.model_name)
        self.hook.get_model_version(self.model_name, version)
        if alias_holder(self.hook, self.model_name, self.alias) == version:
            self.log.info(
                "Alias %s of %s already points at version %s.", self.alias, self.model_name, version
            )
            return version
        self.hook.set_registered_model_alias(self.model_name, self.alias, version)
        self.log.info("Set alias %s of %s to version %s.", self.alias, self.model_name, version)
        return version


class DeleteModelAliasOperator(_RegistryOperator):
    """
    Remove ``alias`` from the model (no-op when absent). The version itself stays.

    :param model_name: registered model name.
    :param alias: alias to remove.
    """

    template_fields: Sequence[str] = ("model_name", "alias")

    def __init__(self, *, model_name: str, alias: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model_name = model_name
        self.alias = alias
        _required(model_name, "model_name", type(self).__name__)
        _required(alias, "alias", type(self).__name__)

    def execute(self, context: Context) -> str | None:
        holder = alias_holder(self.hook, self.model_name, self.alias)
        if holder is None:
            self.log.info("Model %s has no alias %s: nothing to delete.", self.model_name, self.alias)
            return None
        self.hook.delete_registered_model_alias(self.model_name, self.alias)
        self.log.info("Deleted alias %s (was version %s) of %s.", self.alias, holder, self.model_name)
        return holder


class PromoteModelVersionOperator(_RegistryOperator):
    """
    Promote a version: optionally copy it into ``target_model_name``, then move ``alias`` to it.

    The alias moves last, after any copy succeeded, so a failed promotion leaves the old holder in
    place. The move is recorded as a history entry (who, when, why, DAG run, previous version) for
    audit and :class:`RollbackModelOperator`. A re-run finds an earlier copy by its lineage tags
    and does not move an alias that is already in place.

    :param model_name: source registered model, e.g. ``dev.ml.diabetes``.
    :param version: source version (templated, e.g. from XCom or params).
    :param alias: alias to move, ``champion`` by default.
    :param remove_alias: alias removed from ``model_name`` if it still points at ``version``
        (e.g. ``challenger``).
    :param target_model_name: copy into this model first (e.g. ``prod.ml.diabetes``).
    :param target_mlflow_conn_id: connection of another registry for the copy (download + upload).
    :param reason: why, for the audit history.
    :param await_ready_timeout: seconds to wait for a copied version to become READY.
    """

    template_fields: Sequence[str] = (
        "model_name",
        "version",
        "alias",
        "remove_alias",
        "target_model_name",
        "reason",
    )

    def __init__(
        self,
        *,
        model_name: str,
        version: str | int,
        alias: str = "champion",
        remove_alias: str | None = None,
        target_model_name: str | None = None,
        target_mlflow_conn_id: str | None = None,
        reason: str = "",
        await_ready_timeout: float = 300,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model_name = model_name
        self.version = version
        self.alias = alias
        self.remove_alias = remove_alias
        self.target_model_name = target_model_name
        self.target_mlflow_conn_id = target_mlflow_conn_id
        self.reason = reason
        self.await_ready_timeout = await_ready_timeout
        name = type(self).__name__
        for field in ("model_name", "version", "alias"):
            _required(getattr(self, field), field, name)
        if target_mlflow_conn_id and not target_model_name:
            raise ValueError(
                f"{name}: target_mlflow_conn_id={target_mlflow_conn_id!r} needs target_model_name "
                "(the model to copy into in that registry)."
            )
        if remove_alias and remove_alias == alias and not target_model_name:
            raise ValueError(f"{name}: remove_alias {remove_alias!r} is the alias being set.")

    @cached_property
    def target_hook(self) -> MlflowRegistryHook:
        if self.target_mlflow_conn_id:
            return MlflowRegistryHook(self.target_mlflow_conn_id)
        return self.hook

    def execute(self, context: Context) -> dict[str, Any]:
        version = _version_str(self.version, "version")
        source = self.hook
        self.target_hook.require_aliases(self.target_model_name or self.model_name)
        source.get_model_version(self.model_name, version)
        name, target_version = self.model_name, version
        extra: dict[str, Any] = {}
        if self.target_model_name and (
            self.target_model_name != self.model_name or self.target_mlflow_conn_id
        ):
            copied = copy_version(
                source,
                self.target_hook,
                self.model_name,
                version,
                self.target_model_name,
                context=context,
                same_registry=not self.target_mlflow_conn_id,
                await_ready_timeout=self.await_ready_timeout,
                log=self.log,
            )
            name, target_version = self.target_model_name, str(copied.version)
            extra = {"source_model": self.model_name, "source_version": version}
        result = move_alias(
            self.target_hook,
            name,
            self.alias,
            target_version,
            action="promote",
            context=context,
            reason=self.reason,
            extra=extra,
            log=self.log,
        )
        if self.remove_alias:
            holder = alias_holder(source, self.model_name, self.remove_alias)
            if holder == version:
                source.delete_registered_model_alias(self.model_name, self.remove_alias)
                self.log.info(
                    "Removed alias %s (version %s) from %s.", self.remove_alias, version, self.model_name
                )
            elif holder is not None:
                self.log.info(
                    "Alias %s of %s points at version %s, not %s: left in place.",
                    self.remove_alias,
                    self.model_name,
                    holder,
                    version,
                )
        return {k: result[k] for k in ("model_name", "version", "previous_version")}


class TransitionModelVersionStageOperator(_RegistryOperator):
    """
    Move a version to a legacy stage (workspace registries). Stages are deprecated in MLflow;
    prefer aliases with :class:`PromoteModelVersionOperator`.

    :param model_name: registered model name.
    :param version: version number.
    :param stage: one of None, Staging, Production, Archived.
    :param archive_existing_versions: archive the versions currently in ``stage``.
    """

    template_fields: Sequence[str] = ("model_name", "version", "stage")

    def __init__(
        self,
        *,
        model_name: str,
        version: str | int,
        stage: str,
        archive_existing_versions: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model_name = model_name
        self.version = version
        self.stage = stage
        self.archive_existing_versions = archive_existing_versions
        if not _is_template(stage) and str(stage).capitalize() not in LEGACY_STAGES:
            raise ValueError(
                f"{type(self).__name__}: stage {stage!r} is not one of {', '.join(LEGACY_STAGES)}"
            )

    def execute(self, context: Context) -> dict[str, Any]:
        stage = str(self.stage).capitalize()
        if stage not in LEGACY_STAGES:
            raise ModelRegistryError(f"stage {self.stage!r} is not one of {', '.join(LEGACY_STAGES)}")
        version = _version_str(self.version, "version")
        self.log.warning(
            "Model stages are deprecated in MLflow; prefer aliases (PromoteModelVersionOperator). "
            "Transitioning %s version %s to %s.",
            self.model_name,
            version,
            stage,
        )
        current = self.hook.get_model_version(self.model_name, version)
        if str(current.current_stage) == stage and not self.archive_existing_versions:
            self.log.info("Version %s of %s is already in stage %s.", version, self.model_name, stage)
            return {"model_name": self.model_name, "version": version, "stage": stage}
        mv = self.hook.transition_model_version_stage(
            self.model_name, version, stage, archive_existing_versions=self.archive_existing_versions
        )
        return {"model_name": self.model_name, "version": str(mv.version), "stage": str(mv.current_stage)}


class ModelValidationGateOperator(_RegistryOperator):
    """
    Compare a candidate version with the champion against rules; fail or skip when it loses.

    Metrics come from ``candidate_metrics`` / ``champion_metrics`` (dicts or JSON text, e.g. a
    validation notebook's output) or else from MLflow: the version's source run, overlaid by the
    run named in its ``mlops_evaluation_run_id`` tag. Rule syntax and comparator definitions:
    :mod:`mlops.gate`. With no champion yet, only ``min`` / ``max`` apply. Returns
    ``{passed, reasons, checks, candidate_version, champion_version, ...}``.

    :param model_name: registered model name.
    :param candidate_version: the version to judge.
    :param rules: metric -> {comparator: bound}; checked when the DAG is parsed unless templated.
    :param champion_alias: alias of the version to beat.
    :param candidate_metrics: the candidate's metrics (else read from MLflow).
    :param champion_metrics: the champion's metrics (else read from MLflow).
    :param on_fail: ``fail`` (task fails) or ``skip`` (task and downstream skipped).
    :param champion_model_name: model holding the champion when it is not ``model_name``
        (e.g. candidate in ``dev.ml.diabetes``, champion in ``prod.ml.diabetes``).
    :param champion_mlflow_conn_id: connection of the champion's registry when it is another one.
    """

    template_fields: Sequence[str] = (
        "model_name",
        "candidate_version",
        "rules",
        "champion_alias",
        "candidate_metrics",
        "champion_metrics",
        "champion_model_name",
    )

    def __init__(
        self,
        *,
        model_name: str,
        candidate_version: str | int,
        rules: dict[str, dict[str, Any]] | str,
        champion_alias: str = "champion",
        candidate_metrics: dict[str, float] | str | None = None,
        champion_metrics: dict[str, float] | str | None = None,
        on_fail: str = "fail",
        champion_model_name: str | None = None,
        champion_mlflow_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model_name = model_name
        self.candidate_version = candidate_version
        self.rules = rules
        self.champion_alias = champion_alias
        self.candidate_metrics = candidate_metrics
        self.champion_metrics = champion_metrics
        self.on_fail = on_fail
        self.champion_model_name = champion_model_name
        self.champion_mlflow_conn_id = champion_mlflow_conn_id
        name = type(self).__name__
        _required(model_name, "model_name", name)
        _required(candidate_version, "candidate_version", name)
        if on_fail not in ("fail", "skip"):
            raise ValueError(f"{name}: on_fail must be 'fail' or 'skip', got {on_fail!r}")
        if not _is_template(rules):
            try:
                parse_rules(rules)
            except GateRuleError as exc:
                raise ValueError(f"{name} {kwargs.get('task_id', '')!r}: invalid rules: {exc}") from None

    @cached_property
    def champion_hook(self) -> MlflowRegistryHook:
        if self.champion_mlflow_conn_id:
            return MlflowRegistryHook(self.champion_mlflow_conn_id)
        return self.hook

    @staticmethod
    def _mlflow_metrics(hook: MlflowRegistryHook, model_name: str, version: str) -> dict[str, float]:
        """Metrics of the version's source run, overlaid by its evaluation run's (if tagged)."""
        mv = hook.get_model_version(model_name, version)
        metrics: dict[str, float] = {}
        if mv.run_id:
            metrics.update(hook.get_run(mv.run_id).data.metrics)
        evaluation_run = (mv.tags or {}).get(EVALUATION_RUN_TAG)
        if evaluation_run:
            metrics.update(hook.get_run(evaluation_run).data.metrics)
        return metrics

    def _champion_version(self, champion_name: str) -> str | None:
        """The champion's version; None when the champion model or its alias does not exist yet."""
        if self.champion_model_name and self.champion_model_name != self.model_name:
            try:
                return alias_holder(self.champion_hook, champion_name, self.champion_alias)
            except ModelRegistryNotFoundError:
                self.log.info("Champion model %s does not exist yet.", champion_name)
                return None
        return alias_holder(self.champion_hook, champion_name, self.champion_alias)

    def execute(self, context: Context) -> dict[str, Any]:
        try:
            rules = parse_rules(_loads(self.rules))
            candidate = parse_metrics(_loads(self.candidate_metrics), "candidate_metrics")
            champion_given = parse_metrics(_loads(self.champion_metrics), "champion_metrics")
        except GateRuleError as exc:
            raise AirflowFailException(f"Validation gate of {self.model_name!r}: {exc}") from exc
        version = _version_str(self.candidate_version, "candidate_version")
        self.hook.get_model_version(self.model_name, version)
        if candidate is None:
            candidate = self._mlflow_metrics(self.hook, self.model_name, version)
        champion_name = self.champion_model_name or self.model_name
        champion_version = self._champion_version(champion_name)
        champion = champion_given
        if champion is None and champion_version is not None:
            champion = self._mlflow_metrics(self.champion_hook, champion_name, champion_version)
        if champion_version is None and champion_given is None:
            self.log.info(
                "Model %s has no alias %s yet: only absolute rules (min, max) apply.",
                champion_name,
                self.champion_alias,
            )
        checks = evaluate(rules, candidate, champion)
        passed = all(c.passed for c in checks)
        reasons = [c.reason for c in checks if not c.passed]
        self.log.info(
            "Validation gate of %s: candidate v%s vs %s %s v%s\n%s\nVerdict: %s",
            self.model_name,
            version,
            champion_name,
            self.champion_alias,
            champion_version or "-",
            render_table(checks, rules),
            "PASSED" if passed else "FAILED",
        )
        result = {
            "passed": passed,
            "reasons": reasons,
            "model_name": self.model_name,
            "candidate_version": version,
            "champion_model_name": champion_name,
            "champion_version": champion_version,
            "candidate_metrics": candidate,
            "champion_metrics": champion,
            "checks": [c.__dict__ for c in checks],
        }
        self.hook.set_model_version_tag(
            self.model_name, version, "mlops_validation_status", "passed" if passed else "failed"
        )
        if passed:
            return result
        context["ti"].xcom_push(key="gate_result", value=result)
        message = (
            f"Candidate version {version} of {self.model_name!r} failed the validation gate: "
            + "; ".join(reasons)
        )
        if self.on_fail == "skip":
            raise AirflowSkipException(message)
        raise AirflowFailException(message)


class RollbackModelOperator(_RegistryOperator):
    """
    Move ``alias`` back to the version it pointed at before the current promotion (from the
    history written by :class:`PromoteModelVersionOperator`) or to ``to_version``. The rollback
    is recorded in the history too. Refuses when the history has no earlier holder.

    :param model_name: registered model name, e.g. ``prod.ml.diabetes``.
    :param alias: alias to roll back.
    :param to_version: explicit version to move the alias to.
    :param reason: why, for the audit history.
    """

    template_fields: Sequence[str] = ("model_name", "alias", "to_version", "reason")

    def __init__(
        self,
        *,
        model_name: str,
        alias: str = "champion",
        to_version: str | int | None = None,
        reason: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model_name = model_name
        self.alias = alias
        self.to_version = to_version
        self.reason = reason
        _required(model_name, "model_name", type(self).__name__)
        _required(alias, "alias", type(self).__name__)

    def execute(self, context: Context) -> dict[str, Any]:
        hook = self.hook
        current = alias_holder(hook, self.model_name, self.alias)
        history = read_history(hook, self.model_name, self.alias)
        to_version = _loads(self.to_version) if isinstance(self.to_version, str) else self.to_version
        earlier = decided_by_earlier_try(history, lineage_tags(context), "rollback")
        if earlier is not None:
            target, replaced = str(earlier["version"]), earlier.get("previous_version")
            self.log.info(
                "An earlier try of this task chose version %s of %s: rolling back to it again.",
                target,
                self.model_name,
            )
        elif to_version not in (None, ""):
            target, replaced = _version_str(to_version, "to_version"), current
        else:
            target, replaced = rollback_target(history, current), current
            if target is None:
                raise ModelRegistryNotFoundError(
                    f"Cannot roll back alias {self.alias!r} of {self.model_name!r} (now version {current}): "
                    f"the history records no earlier holder. History: {describe_history(history)}. "
                    f"{hook.describe_model(self.model_name)} Pass to_version to choose one."
                )
        move_alias(
            hook,
            self.model_name,
            self.alias,
            target,
            action="rollback",
            context=context,
            reason=self.reason,
            extra={"rolled_back_from": current},
            log=self.log,
        )
        return {"model_name": self.model_name, "version": target, "previous_version": replaced}
