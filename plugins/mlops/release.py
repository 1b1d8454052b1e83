"""A release and a rollback that move the serving endpoint with the champion alias.

The pieces ``mlops_release`` and ``mlops_rollback`` need beside the serving operators of
:mod:`mlops.serving`: a copy into the production model that does not move the alias yet, the
decisions fixed once before the endpoint moves (which version to go back to), and the verdict
that ends a release whose canary failed the way a blocked gate ends one.

The order is the point: the endpoint moves first and the alias last, and a failure between the
two puts the endpoint back on the version the alias still names. So when a DAG run ends, the
``champion`` alias and the endpoint agree (batch scoring and online serving answer with the
same model).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from mlops.exceptions import ModelRegistryNotFoundError
from mlops.operators import _RegistryOperator, _required, _version_str
from mlops.registry import (
    alias_holder,
    copy_version,
    decided_by_earlier_try,
    describe_history,
    lineage_tags,
    read_history,
    rollback_target,
)
from mlops.serving import ServingEndpointHook, served_entity_name, serving_entities, serving_routes

if TYPE_CHECKING:
    from airflow.sdk import Context

    from mlops.hooks import MlflowRegistryHook

FAILED_STATES = ("failed", "upstream_failed")


class CopyModelVersionOperator(_RegistryOperator):
    """
    Copy a version into ``target_model_name`` without moving any alias; returns the new version.

    The release serves the copy first and moves ``champion`` to it only once the endpoint
    serves it well. A retry (or :class:`~mlops.operators.PromoteModelVersionOperator` later in
    the run) finds the copy by its tags instead of making a second one.

    :param model_name: source registered model, e.g. ``dev.ml.diabetes``.
    :param version: source version (templated).
    :param target_model_name: model to copy into, e.g. ``prod.ml.diabetes``.
    :param await_ready_timeout: seconds to wait for the copy to become READY.
    """

    template_fields: Sequence[str] = ("model_name", "version", "target_model_name")

    def __init__(
        self,
        *,
        model_name: str,
        version: str | int,
        target_model_name: str,
        await_ready_timeout: float = 300,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model_name = model_name
        self.version = version
        self.target_model_name = target_model_name
        self.await_ready_timeout = await_ready_timeout
        for field in ("model_name", "version", "target_model_name"):
            _required(getattr(self, field), field, type(self).__name__)

    def execute(self, context: Context) -> str:
        version = _version_str(self.version, "version")
        self.hook.get_model_version(self.model_name, version)
        copied = copy_version(
            self.hook,
            self.hook,
            self.model_name,
            version,
            self.target_model_name,
            context=context,
            same_registry=True,
            await_ready_timeout=self.await_ready_timeout,
            log=self.log,
        )
        return str(copied.version)


def champion_or_none(hook: MlflowRegistryHook, model_name: str, alias: str) -> str | None:
    """The version ``alias`` points at; None before the first release (no model or no alias)."""
    try:
        return alias_holder(hook, model_name, alias)
    except ModelRegistryNotFoundError:
        return None


def plan_release_serving(
    registry: MlflowRegistryHook,
    serving: ServingEndpointHook,
    *,
    endpoint_name: str,
    model_name: str,
    alias: str,
    candidate: str,
) -> dict[str, Any]:
    """How the endpoint takes the candidate, decided once before it moves.

    ``route`` is ``start_canary`` when the endpoint serves another version and a champion
    exists to go back to; otherwise (no endpoint yet, no champion yet, or the candidate already
    serves) ``deploy_candidate``: the endpoint is set on the candidate directly.
    ``previous_champion`` is the version a failed release puts the endpoint back on.
    """
    candidate = _version_str(candidate, "candidate")
    champion = champion_or_none(registry, model_name, alias)
    endpoint = serving.get_endpoint(endpoint_name)
    config = getattr(endpoint, "config", None)
    routes = serving_routes(endpoint) if endpoint is not None else {}
    served = {
        str(e.entity_version)
        for n, e in serving_entities(config).items()
        if e.entity_name == model_name and routes.get(n, 0) > 0
    }
    canary = champion is not None and champion != candidate and bool(served) and served != {candidate}
    return {
        "route": "start_canary" if canary else "deploy_candidate",
        "candidate": candidate,
        "candidate_served_entity": served_entity_name(model_name, candidate),
        "previous_champion": champion,
        "endpoint_existed": endpoint is not None,
        "endpoint_served": sorted(served),
    }


def plan_rollback(
    registry: MlflowRegistryHook,
    *,
    model_name: str,
    alias: str,
    to_version: str | None,
    context: Context,
    rollback_task_id: str,
) -> dict[str, Any]:
    """The version a rollback moves the endpoint and then the alias to, fixed before either moves.

    An earlier try of the same DAG run's alias move (``rollback_task_id``) already chose its
    target: that one again, so a cleared run does not walk one more step back.
    """
    current = champion_or_none(registry, model_name, alias)
    history = read_history(registry, model_name, alias)
    lineage = {**lineage_tags(context), "mlops_task_id": rollback_task_id}
    earlier = decided_by_earlier_try(history, lineage, "rollback")
    if earlier is not None:
        return {"version": str(earlier["version"]), "previous_version": earlier.get("previous_version")}
    if to_version not in (None, "", "None"):
        return {"version": _version_str(to_version, "to_version"), "previous_version": current}
    target = rollback_target(history, current)
    if target is None:
        raise ModelRegistryNotFoundError(
            f"Cannot roll back alias {alias!r} of {model_name!r} (now version {current}): the history "
            f"records no earlier holder. History: {describe_history(history)}. Pass to_version to choose one."
        )
    return {"version": str(target), "previous_version": current}


def release_verdict(
    states: dict[str, str | None],
    *,
    promoted_task: str,
    revert_task: str,
    guarded_tasks: Iterable[str],
    candidate: str | None,
    previous_champion: str | None,
    endpoint_name: str,
    model_name: str,
) -> str:
    """How a release with a canary ends, from its tasks' states (task id -> state).

    Promoted: returns a line saying so. The endpoint put back after a failed canary: the run
    ends as a blocked gate does, skipped (:class:`AirflowSkipException`) with the reason; the
    champion is unchanged. Any other failure fails (:class:`AirflowFailException`), naming it.
    Nothing promoted and nothing failed (gate blocked, approval rejected): skipped.
    """
    guarded = set(guarded_tasks)
    if states.get(promoted_task) == "success":
        return f"Released: {model_name} v{candidate} is the champion and serves all traffic of {endpoint_name!r}."
    reverted = states.get(revert_task) == "success"
    failed = sorted(t for t, s in states.items() if s in FAILED_STATES and not (reverted and t in guarded))
    if failed:
        first = [t for t in failed if states[t] == "failed"] or failed
        back = (
            f"the endpoint was put back on v{previous_champion}"
            if reverted
            else f"the endpoint {endpoint_name!r} may serve the candidate: check it"
            + ("" if previous_champion else " (no champion existed to go back to)")
        )
        raise AirflowFailException(
            f"Release of {model_name} v{candidate} failed at {', '.join(first)}; {back}; champion "
            f"{'unchanged (v' + previous_champion + ')' if previous_champion else 'not set'}. See those tasks' logs."
        )
    if reverted:
        causes = sorted(t for t in guarded if states.get(t) == "failed")
        raise AirflowSkipException(
            f"Release of {model_name} v{candidate} blocked by the canary ({', '.join(causes)} failed): "
            f"endpoint {endpoint_name!r} serves v{previous_champion} again, champion unchanged "
            f"(v{previous_champion}). See the failed task's log for the smoke check report."
        )
    raise AirflowSkipException(f"Nothing released: the champion of {model_name} is unchanged.")
