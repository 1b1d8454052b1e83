"""Errors raised by the mlops operators; each message names the model, version or alias."""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowException, AirflowFailException


class ModelRegistryError(AirflowException):
    """A model-registry call failed or the registry is in a state the operator cannot act on."""


class ModelRegistryNotFoundError(ModelRegistryError):
    """A model, version or alias does not exist; the message lists what does."""


class ConcurrentPromotionError(ModelRegistryError, AirflowFailException):
    """Another promotion moved the alias while this one was applying its own move.

    Fails without retries: a retry would silently override the other promotion, which is a
    decision for a person.
    """
