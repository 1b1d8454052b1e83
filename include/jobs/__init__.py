"""Databricks job definitions (the JSON files here), rendered for one environment.

A definition names its environment and may use ``${dotted.config.key}`` placeholders, filled
from include/config; ``${cluster}`` is the environment's cluster spec. Notebook paths are
relative: with ``jobs.git_url`` configured the job runs them from that repository at
``jobs.git_ref`` (source GIT); otherwise from the workspace folder ``jobs.notebook_dir``.
Training, which is not a job definition here, takes the same location and ref from
:func:`notebook_location` and :func:`git_source`, so one release runs one code ref.

Databricks dynamic value references (``{{job.run_id}}``, ``{{tasks.<key>.values.<name>}}``) are
left as they are: deploy the settings with ``mlops.jobs.DatabricksDeployJobOperator``, which
does not render them with Jinja, so Databricks resolves them when the job runs.
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


def notebook_location(config: dict, notebook: str) -> dict[str, str]:
    """``notebook_path`` and ``source`` of a notebook of include/notebooks, as a notebook task takes them.

    With ``jobs.git_url`` the path is relative to the repository (source GIT, read at the job's
    ``git_source`` ref); otherwise it is the notebook's path in the workspace folder.
    """
    jobs_cfg = config.get("jobs", {})
    if jobs_cfg.get("git_url"):
        return {"notebook_path": f"{GIT_NOTEBOOK_ROOT}/{notebook}", "source": "GIT"}
    return {"notebook_path": f"{jobs_cfg['notebook_dir'].rstrip('/')}/{notebook}", "source": "WORKSPACE"}


def git_source(config: dict) -> dict[str, str] | None:
    """The Jobs API ``git_source`` every job of a release runs from, or None without ``jobs.git_url``."""
    jobs_cfg = config.get("jobs", {})
    git_url = jobs_cfg.get("git_url")
    if not git_url:
        return None
    ref_type = jobs_cfg.get("git_ref_type", "branch")
    if ref_type not in ("branch", "tag", "commit"):
        raise JobDefinitionError(f"jobs.git_ref_type is {ref_type!r}: use branch, tag or commit.")
    return {
        "git_url": git_url,
        "git_provider": jobs_cfg.get("git_provider", "gitHub"),
        f"git_{ref_type}": str(jobs_cfg.get("git_ref") or "main"),
    }


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

    for task in settings.get("tasks", []):
        notebook = task.get("notebook_task")
        if notebook:
            notebook.update(notebook_location(config, notebook["notebook_path"]))
    source = git_source(config)
    if source:
        settings["git_source"] = source
    return environment, settings
