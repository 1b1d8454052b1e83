"""Databricks job definitions (the JSON files here), rendered for one environment.

A definition names its environment and may use ``${dotted.config.key}`` placeholders, filled
from include/config; ``${cluster}`` is the environment's cluster spec. Notebook paths are
relative: with ``jobs.git_url`` configured the job runs them from that repository at
``jobs.git_ref`` (source GIT); otherwise from the workspace folder ``jobs.notebook_dir``.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

JOBS_DIR = Path(__file__).resolve().parent
_PLACEHOLDER = re.compile(r"\$\{([\w.]+)\}")
GIT_NOTEBOOK_ROOT = "include/notebooks"


class JobDefinitionError(ValueError):
    """A job definition names something the configuration does not have."""


def job_names() -> list[str]:
    return sorted(p.stem for p in JOBS_DIR.glob("*.json"))


def _lookup(config: dict, dotted: str, job: str) -> Any:
    value: Any = config
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise JobDefinitionError(f"Job {job!r} uses ${{{dotted}}}, which include/config does not define.")
        value = value[part]
    return value


def _fill(value: Any, config: dict, job: str) -> Any:
    if isinstance(value, dict):
        return {k: _fill(v, config, job) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, config, job) for v in value]
    if not isinstance(value, str):
        return value
    whole = _PLACEHOLDER.fullmatch(value)
    if whole and whole.group(1) == "cluster":
        return copy.deepcopy(config["_cluster"])

    def text(match: re.Match) -> str:
        found = _lookup(config, match.group(1), job)
        if found is None:
            return ""
        if isinstance(found, list):
            return ",".join(str(v) for v in found)
        return str(found)

    return _PLACEHOLDER.sub(text, value)


def render_job(name: str, config: dict) -> tuple[str, dict]:
    """(environment, Jobs API create/reset settings) for the definition ``include/jobs/<name>.json``."""
    path = JOBS_DIR / f"{name}.json"
    if not path.exists():
        raise JobDefinitionError(f"No job definition {path}; known: {job_names()}.")
    definition = json.loads(path.read_text(encoding="utf-8"))
    environment = definition.pop("environment")
    if environment not in config["environments"]:
        raise JobDefinitionError(f"Job {name!r} names environment {environment!r}, not in include/config.")
    scope = {**config, "_cluster": config["environments"][environment]["cluster"]}
    settings = _fill(definition, scope, name)

    jobs_cfg = config.get("jobs", {})
    git_url = jobs_cfg.get("git_url")
    for task in settings.get("tasks", []):
        notebook = task.get("notebook_task")
        if not notebook:
            continue
        if git_url:
            notebook["notebook_path"] = f"{GIT_NOTEBOOK_ROOT}/{notebook['notebook_path']}"
            notebook["source"] = "GIT"
        else:
            notebook["notebook_path"] = f"{jobs_cfg['notebook_dir'].rstrip('/')}/{notebook['notebook_path']}"
            notebook["source"] = "WORKSPACE"
    if git_url:
        ref_type = jobs_cfg.get("git_ref_type", "branch")
        if ref_type not in ("branch", "tag", "commit"):
            raise JobDefinitionError(f"jobs.git_ref_type is {ref_type!r}: use branch, tag or commit.")
        settings["git_source"] = {
            "git_url": git_url,
            "git_provider": jobs_cfg.get("git_provider", "gitHub"),
            f"git_{ref_type}": str(jobs_cfg.get("git_ref") or "main"),
        }
    return environment, settings
