"""Per-call credentials for the MLflow client, without leaking them into ``os.environ``.

MLflow reads credentials from process-global environment variables (``MLFLOW_TRACKING_TOKEN``,
``DATABRICKS_HOST``/``DATABRICKS_TOKEN``). Setting those for a whole task would hand one
connection's token to every other client in the process (a triggerer runs many triggers in one
process; a task may talk to two registries). Two narrower mechanisms are used instead:

* HTTP tracking servers: MLflow asks every registered ``RequestHeaderProvider`` for headers on
  each request. We register one provider, once per process, that returns the headers stored in a
  :class:`contextvars.ContextVar`. The hook sets the variable only for the duration of one client
  call (``with auth_headers(...)``), so the header goes to exactly the requests of that call, in
  that thread or task, and to no other. Thread pools that MLflow starts for artifact transfers
  do not inherit context variables, so :class:`ContextThreadPool` copies the caller's context
  into each job.
* Databricks workspaces (``databricks`` / ``databricks-uc`` URIs): MLflow resolves those through
  the Databricks SDK, whose only inputs are environment variables or a profile file. There the
  variables are set for one client call under a process-wide lock and restored right after
  (``scoped_env``): never longer than a call, never seen by a concurrent call of this module.
  MLflow's default tracking and registry URIs are pinned to the workspace the same way
  (``default_uris``), for the lookups that ignore the client's own URIs.
"""

from __future__ import annotations

import contextvars
import os
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

_HEADERS: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "mlops_mlflow_auth_headers", default=None
)
_REGISTER_LOCK = threading.Lock()
_registered = False
_ENV_LOCK = threading.RLock()


def _ensure_provider_registered() -> None:
    global _registered
    if _registered:
        return
    with _REGISTER_LOCK:
        if _registered:
            return
        from mlflow.tracking.request_header.abstract_request_header_provider import (
            RequestHeaderProvider,
        )
        from mlflow.tracking.request_header.registry import _request_header_provider_registry

        class _ContextHeaderProvider(RequestHeaderProvider):
            """Adds the headers of the current hook call, and nothing outside one."""

            def in_context(self) -> bool:
                return bool(_HEADERS.get())

            def request_headers(self) -> dict[str, str]:
                return dict(_HEADERS.get() or {})

        _request_header_provider_registry.register(_ContextHeaderProvider)
        _registered = True


@contextmanager
def auth_headers(headers: Mapping[str, str] | None) -> Iterator[None]:
    """Send ``headers`` with every MLflow request made inside the block (this context only)."""
    if not headers:
        yield
        return
    _ensure_provider_registered()
    token = _HEADERS.set(dict(headers))
    try:
        yield
    finally:
        _HEADERS.reset(token)


@contextmanager
def scoped_env(values: Mapping[str, str] | None) -> Iterator[None]:
    """Set environment variables for one call under a process-wide lock, then restore them."""
    if not values:
        yield
        return
    with _ENV_LOCK:
        saved = {key: os.environ.get(key) for key in values}
        os.environ.update(values)
        try:
            yield
        finally:
            for key, old in saved.items():
                if old is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = old


@contextmanager
def default_uris(tracking_uri: str, registry_uri: str) -> Iterator[None]:
    """Make ``tracking_uri``/``registry_uri`` MLflow's process defaults for one call, then restore.

    Some nested lookups ignore the client's URIs and use the defaults: Unity Catalog's
    ``create_model_version`` downloads a ``models:/<model_id>`` or ``models:/<name>/<version>``
    source through ``ModelsArtifactRepository``, which builds ``MlflowClient(registry_uri=
    mlflow.get_registry_uri())`` and reads logged models from ``mlflow.get_tracking_uri()``
    (mlflow/store/artifact/models_artifact_repo.py). Inside Databricks both defaults already name
    the workspace; in an Airflow worker they do not. Held under the same lock as ``scoped_env``.
    """
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    with _ENV_LOCK:
        saved = tracking_utils._tracking_uri, registry_utils._registry_uri
        tracking_utils._tracking_uri, registry_utils._registry_uri = tracking_uri, registry_uri
        try:
            yield
        finally:
            tracking_utils._tracking_uri, registry_utils._registry_uri = saved


class ContextThreadPool(ThreadPoolExecutor):
    """A thread pool whose jobs run in a copy of the submitter's context (and so its headers)."""

    def submit(self, fn, /, *args, **kwargs):
        ctx = contextvars.copy_context()
        return super().submit(ctx.run, fn, *args, **kwargs)
