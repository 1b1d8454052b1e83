"""The serving backend's rules, in-process (no HTTP, no model processes): configs Databricks refuses.

The registry here only knows names; every version fails to resolve, so an accepted config ends
UPDATE_FAILED without starting a process.
"""

from __future__ import annotations

import threading
import time

import pytest

from devstack.workspace.http import ApiError, not_found
from devstack.workspace.serving.backend import ServingBackend
from devstack.workspace.store import Store


class NamesOnly:
    """A UC registry that validates names and has no versions at all (answers once ``release`` is set)."""

    def __init__(self):
        self.release = threading.Event()

    def full_name(self, name: str):
        parts = name.split(".")
        if len(parts) != 3:
            raise ApiError(
                400, "INVALID_PARAMETER_VALUE", f"Bad model name {name!r}: specify all three levels."
            )
        return name.lower(), *parts

    def get_model_version(self, name: str, version: str):
        self.release.wait(10)
        raise not_found(f"Model version {version} of registered model '{name}' does not exist.")


@pytest.fixture
def backend(tmp_path):
    backend = ServingBackend(
        Store(tmp_path / "ws.db"), NamesOnly(), None, tmp_path / "serving", idle_seconds=60
    )
    yield backend
    backend.registry.release.set()
    backend.shutdown()


def entity(version="1", **kwargs):
    return {"entity_name": "prod.ml.m", "entity_version": version, **kwargs}


def refused(backend, config, name="ep") -> ApiError:
    with pytest.raises(ApiError) as caught:
        backend.create(name, config, creator="alice")
    assert caught.value.status == 400
    return caught.value


def test_configs_databricks_refuses(backend):
    assert "not an alias" in refused(backend, {"served_entities": [entity(version=None)]}).message
    assert (
        "all three levels"
        in refused(backend, {"served_entities": [{"entity_name": "m", "entity_version": "1"}]}).message
    )
    assert (
        "Small, Medium, Large"
        in refused(backend, {"served_entities": [entity(workload_size="Huge")]}).message
    )
    two = [entity("1"), entity("2")]
    assert "give traffic_config.routes" in refused(backend, {"served_entities": two}).message
    routes = {
        "routes": [
            {"served_entity_name": "m-1", "traffic_percentage": 100},
            {"served_entity_name": "m-3", "traffic_percentage": 0},
        ]
    }
    assert (
        "'m-3', which the config does not have"
        in refused(backend, {"served_entities": two, "traffic_config": routes}).message
    )
    assert "used twice" in refused(backend, {"served_entities": [entity("1"), entity("1")]}).message
    assert (
        "Invalid endpoint name" in refused(backend, {"served_entities": [entity()]}, name="has space").message
    )
    assert backend.list() == []


def test_failed_first_config_leaves_the_endpoint_not_ready(backend):
    created = backend.create("ep", {"served_entities": [entity("7")]}, creator="alice")
    assert created["state"] == {"ready": "NOT_READY", "config_update": "IN_PROGRESS"}
    assert created["pending_config"]["served_entities"][0]["name"] == "m-7"
    with pytest.raises(ApiError) as busy:
        backend.update_config("ep", {"served_entities": [entity("8")]}, creator="alice")
    assert (busy.value.status, busy.value.error_code) == (409, "RESOURCE_CONFLICT")
    backend.registry.release.set()
    deadline = time.monotonic() + 10
    while backend.get("ep")["state"]["config_update"] == "IN_PROGRESS":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    seen = backend.get("ep")
    assert seen["state"] == {"ready": "NOT_READY", "config_update": "UPDATE_FAILED"}
    assert "config" not in seen
    with pytest.raises(ApiError) as not_ready:
        backend.query("ep", b'{"inputs": [1]}')
    assert not_ready.value.status == 503
