"""Release approval by a person, recorded on the model version as Databricks deployment jobs do.

Databricks' MLflow 3 deployment jobs gate a version on a model-version tag whose key is the
approval task's name and whose value is "approved" (compared case-insensitively); see the
approval notebook of Databricks' deployment-jobs docs (notebooks/source/mlflow/deployment-jobs/
approval). :class:`ReleaseApprovalOperator` writes the same tag, so the registry shows a
release approved in both worlds, plus who answered and when.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk.exceptions import AirflowFailException

from mlops.hooks import MlflowRegistryHook

if TYPE_CHECKING:
    from airflow.sdk import Context

APPROVED = "approved"
REJECTED = "rejected"
TRIGGERED_BY_TAG = "mlops_triggered_by"


def _user_id(user: Any) -> str:
    if isinstance(user, dict):
        return str(user.get("id") or user.get("name") or "")
    return str(user or "")


class ReleaseApprovalOperator(ApprovalOperator):
    """
    Ask a person to approve the release of one model version; record the answer on the version.

    The answer becomes model-version tags: ``<task_id>`` = ``approved`` or ``rejected`` (the key
    and value Databricks deployment jobs read), ``mlops_approval_by``, ``mlops_approval_at`` and
    ``mlops_approval_run_id``. A rejection skips the downstream promotion, so the champion stays.

    :param model_name: registered model of the candidate, e.g. ``dev.ml.diabetes``.
    :param version: the candidate version (templated).
    :param approvers: user ids who may answer (Airflow's HITL respondents). Empty: anyone allowed
        to respond to the DAG's tasks.
    :param separation_of_duties: the user named in the version's ``mlops_triggered_by`` tag (who
        triggered its training) may not approve. With ``approvers`` they are left out of the
        respondents, so the UI refuses them; without, their approval fails this task.
    :param mlflow_conn_id: connection of the MLflow tracking server.
    :param databricks_conn_id: connection of a Databricks workspace (instead of mlflow_conn_id).
    :param registry_uri: registry URI override (``databricks-uc``...).
    """

    template_fields: Sequence[str] = ("subject", "body", "model_name", "version")

    def __init__(
        self,
        *,
        model_name: str,
        version: str | int,
        approvers: Sequence[str] | None = None,
        separation_of_duties: bool = False,
        mlflow_conn_id: str = MlflowRegistryHook.default_conn_name,
        databricks_conn_id: str | None = None,
        registry_uri: str | None = None,
        **kwargs: Any,
    ) -> None:
        if "assigned_users" in kwargs:
            raise ValueError(
                f"{type(self).__name__}: pass approvers, not assigned_users (they depend on the candidate)."
            )
        super().__init__(**kwargs)
        self.model_name = model_name
        self.version = version
        self.approvers = [str(a) for a in approvers or []]
        self.separation_of_duties = separation_of_duties
        self.mlflow_conn_id = mlflow_conn_id
        self.databricks_conn_id = databricks_conn_id
        self.registry_uri = registry_uri
        if any(not a.strip() for a in self.approvers):
            raise ValueError(f"{type(self).__name__}: approvers must be user ids, got {approvers!r}")

    @cached_property
    def hook(self) -> MlflowRegistryHook:
        return MlflowRegistryHook(
            self.mlflow_conn_id, databricks_conn_id=self.databricks_conn_id, registry_uri=self.registry_uri
        )

    def _trained_by(self) -> str | None:
        mv = self.hook.get_model_version(self.model_name, str(self.version))
        return (mv.tags or {}).get(TRIGGERED_BY_TAG) or None

    def respondents(self, trained_by: str | None) -> list[str]:
        """The approvers left once separation of duties has taken out who trained the candidate."""
        if not self.separation_of_duties or not trained_by:
            return list(self.approvers)
        return [a for a in self.approvers if a != trained_by]

    def execute(self, context: Context) -> Any:
        trained_by = self._trained_by()
        respondents = self.respondents(trained_by)
        if self.approvers and not respondents:
            raise AirflowFailException(
                f"No one may approve version {self.version} of {self.model_name}: the only approvers "
                f"{self.approvers} triggered its training ({TRIGGERED_BY_TAG}={trained_by!r}) and "
                "separation_of_duties is on. Add another approver in include/config "
                "(environments.prod.approval.approvers) and clear this task."
            )
        if self.separation_of_duties and not trained_by:
            self.log.warning(
                "Version %s of %s has no %s tag: separation of duties cannot exclude its trainer.",
                self.version,
                self.model_name,
                TRIGGERED_BY_TAG,
            )
        self.assigned_users = [{"id": user, "name": user} for user in respondents] or None
        if self.separation_of_duties and trained_by:
            self.body = (
                f"{self.body or ''}\n\nTraining triggered by {trained_by}, who may not approve "
                "(separation of duties)."
            ).strip()
        self.log.info(
            "Waiting for %s to approve version %s of %s.",
            ", ".join(respondents) or "any user allowed to respond",
            self.version,
            self.model_name,
        )
        return super().execute(context)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        if "error" in event:  # timed out or the trigger failed: the provider raises, nothing recorded
            return super().execute_complete(context=context, event=event)
        # Recorded before the provider handles the answer: on "Reject" it skips the downstream
        # tasks by raising, so nothing after it would run.
        chosen = event["chosen_options"][0]
        user = _user_id(event["responded_by_user"])
        at = event["responded_at"]
        at = at.isoformat(timespec="seconds") if isinstance(at, datetime) else str(at)
        if chosen == self.APPROVE and self.separation_of_duties:
            trained_by = self._trained_by()
            if trained_by and user == trained_by:
                raise AirflowFailException(
                    f"{user} triggered the training of version {self.version} of {self.model_name} and "
                    "may not approve its release (separation_of_duties in include/config). Nothing was "
                    "promoted. Clear this task so another approver can answer."
                )
        decision = APPROVED if chosen == self.APPROVE else REJECTED
        tags = {
            self.task_id: decision,
            "mlops_approval_by": user,
            "mlops_approval_at": at,
            "mlops_approval_run_id": str(context["ti"].run_id),
        }
        for key, value in tags.items():
            self.hook.set_model_version_tag(self.model_name, str(self.version), key, value)
        if decision == APPROVED:
            self.log.info("Version %s of %s approved by %s at %s.", self.version, self.model_name, user, at)
        else:
            self.log.warning(
                "Release REJECTED by %s at %s: version %s of %s is not promoted; the champion is unchanged.",
                user,
                at,
                self.version,
                self.model_name,
            )
        return super().execute_complete(context=context, event=event)
