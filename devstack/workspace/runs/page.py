"""The run page behind ``run_page_url``: a plain HTML view of one run for a browser on localhost.

It shows the run's state and parameters, its task graph (each task with its state and
depends_on), cluster starts, and for each task run its notebook output, error, trace and logs,
a condition task's outcome and a for-each task's iterations.
No authentication: the page is for the developer's own browser, like the provider's
"See Databricks Job Run" link.
"""

from __future__ import annotations

import datetime as dt
import json
from html import escape
from typing import TYPE_CHECKING, Any

from devstack.workspace.http import Request, Response
from devstack.workspace.runs.api import render_output, run_page_url
from devstack.workspace.runs.state import RunRec, RunsBackend

if TYPE_CHECKING:
    from devstack.workspace.context import WorkspaceContext

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#1b1b1b}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}
.SUCCESS{color:#137333}.FAILED,.TIMEDOUT,.INTERNAL_ERROR,.UPSTREAM_FAILED{color:#b3261e}.CANCELED{color:#8a6d00}
pre{background:#f4f4f4;padding:.6em;overflow-x:auto;max-height:30em}
"""


def _when(ms: int | None) -> str:
    if not ms:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _state(rec: RunRec) -> str:
    result = rec.result or ""
    return f'<span class="{escape(result or rec.life)}">{escape(rec.life)} {escape(result)}</span>'


def _pre(title: str, text: Any) -> str:
    if text in (None, ""):
        return ""
    if not isinstance(text, str):
        text = json.dumps(text, indent=2)
    return f"<h4>{escape(title)}</h4><pre>{escape(text)}</pre>"


def render_page(ctx: WorkspaceContext, mgr: RunsBackend, run_id: int) -> tuple[int, str]:
    """(status, HTML) of the page of run ``run_id``."""
    base_url = ctx.base_url
    with mgr.lock:
        rec = mgr.runs.get(run_id)
        if rec is None:
            return (
                404,
                f"<h1>Run {run_id} not found</h1><p>No run with this id exists in workspace {escape(ctx.name)}.</p>",
            )
        parent = rec if rec.parent_id is None else mgr.runs[rec.parent_id]
        attempts = [mgr.runs[i] for key in parent.task_order for i in parent.attempts.get(key, [])]
        shown = attempts if rec.parent_id is None else [rec]
        outputs = {t.run_id: render_output(base_url, mgr, t) for t in shown}
        # A for-each task run: its iterations (the latest attempt of each) and their counts.
        iterations = {t.run_id: [mgr.runs[i] for i in t.iterations if i in mgr.runs] for t in shown}
        stats = {t.run_id: mgr.for_each_stats(t)["task_run_stats"] for t in shown if t.iterations}
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "" if rec.terminal else "<meta http-equiv='refresh' content='3'>",  # follow a live run
        f"<title>Run {run_id}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(parent.run_name)} &mdash; run {run_id}</h1>",
        f"<p>Workspace <b>{escape(ctx.name)}</b> &middot; job {parent.job_id} &middot; {escape(parent.run_type)}</p>",
    ]
    if rec.parent_id is not None:
        parts.append(
            f"<p>Task <b>{escape(rec.task_key or '')}</b> of job run "
            f'<a href="{escape(run_page_url(base_url, parent))}">{parent.run_id}</a></p>'
        )
    parts += [
        "<table>",
        f"<tr><th>State</th><td>{_state(rec)}</td></tr>",
        f"<tr><th>Message</th><td>{escape(rec.message or '')}</td></tr>",
        f"<tr><th>Started</th><td>{_when(rec.start_time)}</td></tr>",
        f"<tr><th>Ended</th><td>{_when(rec.end_time)}</td></tr>",
        f"<tr><th>Cluster starts</th><td>{parent.cluster_starts}</td></tr>",
        f"<tr><th>Repairs</th><td>{len(parent.repairs)}</td></tr>",
        "</table>",
        _pre("Parameters", {k: v for k, v in parent.overrides.items() if v} or None),
        _pre("Job parameters", parent.job_parameters or None),
        "<h2>Tasks</h2><table><tr><th>task</th><th>run</th><th>attempt</th><th>state</th><th>depends on</th>"
        "<th>run_if</th><th>cluster</th><th>message</th></tr>",
    ]
    for task in attempts:
        deps = ", ".join(d["task_key"] for d in task.spec.get("depends_on") or [])
        cluster = (task.cluster_instance or {}).get("cluster_id", "")
        kind = task.spec.get("job_cluster_key") or task.spec.get("existing_cluster_id") or "new_cluster"
        parts.append(
            f"<tr><td>{escape(task.task_key or '')}</td>"
            f'<td><a href="{escape(run_page_url(base_url, task))}">{task.run_id}</a></td>'
            f"<td>{task.attempt_number}</td><td>{_state(task)}</td><td>{escape(deps)}</td>"
            f"<td>{escape(task.spec.get('run_if') or 'ALL_SUCCESS')}</td>"
            f"<td>{escape(kind)} {escape(cluster)}</td><td>{escape(task.message or '')}</td></tr>"
        )
    parts.append("</table>")
    for task in shown:
        out = outputs[task.run_id]
        parts.append(
            f"<h3>Task run {task.run_id}: {escape(task.task_key or '')} (attempt {task.attempt_number})</h3>"
        )
        if task.outcome is not None:
            parts.append(f"<p>Condition outcome: <b>{escape(task.outcome)}</b></p>")
        if task.run_id in stats:
            parts.append(_iterations(base_url, iterations[task.run_id], stats[task.run_id]))
        notebook = out.get("notebook_output") or {}
        parts.append(_pre("Notebook output", notebook.get("result")))
        parts.append(_pre("Error", out.get("error")))
        parts.append(_pre("Error trace", out.get("error_trace")))
        parts.append(_pre("Logs", out.get("logs")))
    parts.append("</body></html>")
    return 200, "".join(parts)


def _iterations(base_url: str, runs: list[RunRec], stats: dict[str, int]) -> str:
    """The iterations of a for-each task run: their counts, then one row each."""
    counts = ", ".join(f"{n} {name.removesuffix('_iterations')}" for name, n in stats.items())
    rows = "".join(
        f'<tr><td>{i}</td><td><a href="{escape(run_page_url(base_url, it))}">{it.run_id}</a></td>'
        f"<td>{it.attempt_number}</td><td>{_state(it)}</td><td>{escape(it.message or '')}</td></tr>"
        for i, it in enumerate(runs)
    )
    return (
        f"<h4>Iterations</h4><p>{escape(counts)}</p><table><tr><th>#</th><th>run</th><th>attempt</th>"
        f"<th>state</th><th>message</th></tr>{rows}</table>"
    )


class RunPage:
    """The HTML page of one run (job run or task run), at the run_page_url runs/get hands out."""

    def __init__(self, runs: RunsBackend, settings: WorkspaceContext):
        self.runs = runs
        self.settings = settings

    def page(self, request: Request):
        try:
            run_id = int(request.path_params["run_id"])
        except ValueError:
            return Response(b"<h1>Not a run id</h1>", status=404)
        status, html = render_page(self.settings, self.runs, run_id)
        return Response(html.encode(), status=status)
