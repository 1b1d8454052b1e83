"""The lifecycle's configuration: environments.yaml plus an optional overlay (e.g. devstack.yaml).

DAG files call :func:`load_config` at parse time; it reads local files only. The overlay is
named by the ``MLOPS_CONFIG_OVERLAY`` environment variable (a name in this folder, like
``devstack``, or a path). ``${VAR}`` in string values is replaced from the environment.
"""

from __future__ import annotations

import copy
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

CONFIG_DIR = Path(__file__).resolve().parent
BASE_FILE = CONFIG_DIR / "environments.yaml"
OVERLAY_ENV = "MLOPS_CONFIG_OVERLAY"
ENVIRONMENTS = ("dev", "staging", "prod")

_VAR = re.compile(r"\$\{(\w+)\}")


class ConfigError(ValueError):
    """The configuration is missing a value or names something that does not exist."""


def deep_merge(base: dict, overlay: dict) -> dict:
    """``overlay`` on top of ``base``: nested dicts merge, everything else is replaced."""
    merged = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _expand(value: Any, where: str) -> Any:
    if isinstance(value, dict):
        return {k: _expand(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, str):

        def replace(match: re.Match) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise ConfigError(
                    f"{where} uses ${{{name}}}, but the environment variable {name} is not set. "
                    f"Set it (python -m devstack up writes it to the devstack env file) or "
                    f"remove the overlay ({OVERLAY_ENV})."
                )
            return os.environ[name]

        return _VAR.sub(replace, value)
    return value


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"Config file {path} does not exist.") from None
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {path} must hold a mapping at the top level.")
    return data


def _overlay_path(overlay: str) -> Path:
    candidate = Path(overlay)
    if candidate.suffix in (".yaml", ".yml") and candidate.exists():
        return candidate
    named = CONFIG_DIR / f"{overlay}.yaml"
    if named.exists():
        return named
    known = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if p != BASE_FILE)
    raise ConfigError(f"Config overlay {overlay!r} not found: use a path or one of {known}.")


@lru_cache(maxsize=8)
def _load(overlay: str | None, env_key: tuple) -> dict:
    config = _read_yaml(BASE_FILE)
    if overlay:
        config = deep_merge(config, _read_yaml(_overlay_path(overlay)))
    config = _expand(config, "config")
    for name in ENVIRONMENTS:
        if name not in config.get("environments", {}):
            raise ConfigError(f"environments.{name} is missing from {BASE_FILE}.")
    _check_registry(config.get("registry") or {})
    return config


def _check_registry(registry: dict) -> None:
    """A self-hosted registry needs the server's URL for the notebooks, or they would register
    in their workspace's MLflow while Airflow's operators look in the server's registry."""
    tracking_uri = registry.get("tracking_uri")
    if not registry.get("uri") and not tracking_uri:
        raise ConfigError(
            "registry.uri is null (a self-hosted MLflow server's registry, through the connection "
            f"{registry.get('mlflow_conn_id')!r}), but registry.tracking_uri is not set: the notebooks "
            "would track and register in their workspace's MLflow instead. Set registry.tracking_uri "
            "to the server's URL as the clusters reach it, or set registry.uri to databricks-uc."
        )
    if tracking_uri and not re.match(r"^https?://[^/]", str(tracking_uri)):
        raise ConfigError(
            f"registry.tracking_uri is {tracking_uri!r}: use the self-hosted MLflow server's http:// "
            "or https:// URL, or null for the Databricks runtime's own MLflow."
        )
    scope = registry.get("tracking_secret_scope")
    if scope is not None and (not isinstance(scope, str) or not scope.strip()):
        raise ConfigError(
            f"registry.tracking_secret_scope is {scope!r}: name a Databricks secret scope, or null."
        )
    if scope and not tracking_uri:
        raise ConfigError(
            f"registry.tracking_secret_scope is {scope!r} but registry.tracking_uri is not set: the "
            "scope signs notebooks in to a self-hosted MLflow server; set its URL or remove the scope."
        )


def load_config(overlay: str | None = None) -> dict:
    """The merged configuration (a fresh copy; cached per overlay and environment)."""
    overlay = overlay if overlay is not None else os.environ.get(OVERLAY_ENV) or None
    # An overlay outside this folder (a path) may reference variables of its own.
    names = _referenced_vars() | (_vars_of(_overlay_path(overlay)) if overlay else frozenset())
    env_key = tuple(sorted((k, v) for k, v in os.environ.items() if k in names))
    return copy.deepcopy(_load(overlay, env_key))


@lru_cache(maxsize=1)
def _referenced_vars() -> frozenset[str]:
    names: set[str] = set()
    for path in CONFIG_DIR.glob("*.yaml"):
        names.update(_VAR.findall(path.read_text(encoding="utf-8")))
    return frozenset(names)


@lru_cache(maxsize=8)
def _vars_of(path: Path) -> frozenset[str]:
    return frozenset(_VAR.findall(path.read_text(encoding="utf-8")))


def environment(config: dict, name: str) -> dict:
    """The settings of environment ``name`` (dev, staging or prod)."""
    try:
        return config["environments"][name]
    except KeyError:
        raise ConfigError(
            f"Unknown environment {name!r}: use one of {list(config['environments'])}."
        ) from None
