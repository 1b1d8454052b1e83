"""Execution contexts and commands on all-purpose clusters (Command Execution API 1.2), no HTTP.

A context lives in its cluster's driver (a namespace there, see
:mod:`devstack.workspace.runtime.commands`) and dies with it: a restarted or terminated cluster
has none. A dead context lets go of its driver and commands; only a record of it stays, so that
contexts/status answers ``Error`` for it (and commands/status ``Error`` for its commands).
Commands of one context run one after the other, in the order they came; a command
whose Python raised is ``Finished`` with an ``error`` result, as on Databricks, while ``Error``
means the command could not run (its driver died).
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from devstack.workspace.clusters.backend import ClusterManager

LANGUAGES = ("python", "sql")
# Finished commands kept per context for commands/status.
MAX_COMMANDS = 1000
# Contexts whose driver died, remembered (id and cluster only) so status calls answer Error.
MAX_ERRORED_CONTEXTS = 1000
LOST_CONTEXT_SUMMARY = "The cluster's driver was restarted or terminated"


class CommandError(Exception):
    """A request the Command Execution API refuses; its body is ``{"error": message}`` (API 1.2)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass
class Command:
    command_id: str
    context_id: str
    language: str
    text: str
    status: str = "Queued"
    results: dict[str, Any] | None = None


@dataclass
class Context:
    context_id: str
    cluster_id: str
    language: str
    driver: Any
    status: str = "Running"
    queue: deque = field(default_factory=deque)
    running: str | None = None
    commands: dict[str, Command] = field(default_factory=dict)


class CommandsBackend:
    """Contexts and commands, running on the drivers of :class:`ClusterManager`'s clusters."""

    def __init__(self, clusters: ClusterManager):
        self.clusters = clusters
        self._lock = threading.Lock()
        self._contexts: dict[str, Context] = {}
        self._errored: OrderedDict[str, str] = OrderedDict()  # context id -> cluster id

    # ------------------------------------------------------------------ contexts

    def _driver(self, cluster_id: str):
        if not cluster_id:
            raise CommandError("requirement failed: missing clusterId")
        cluster = self.clusters.clusters.get(cluster_id)
        if cluster is None:
            raise CommandError(f"Cluster {cluster_id} does not exist")
        driver = self.clusters.cluster_driver_if_running(cluster_id)
        if driver is None or not driver.alive:
            raise CommandError(
                f"ClusterNotReadyException: Cluster {cluster_id} is in unexpected state {cluster.state.title()}; "
                "start it first (clusters/start)."
            )
        return driver

    def create_context(self, cluster_id: str, language: str) -> str:
        language = (language or "python").lower()
        driver = self._driver(cluster_id)
        if language not in LANGUAGES:
            raise CommandError(
                f"Language {language} is not supported here; use one of {', '.join(LANGUAGES)}."
            )
        context_id = str(secrets.randbelow(9 * 10**18) + 10**18)
        with self._lock:
            self._contexts[context_id] = Context(context_id, cluster_id, language, driver)
            contexts = list(self._contexts.values())
        for context in contexts:  # those of drivers that died meanwhile let go of them
            self._check_driver(context)
        return context_id

    def _check_driver(self, context: Context) -> None:
        """A context whose driver is gone (its cluster restarted or terminated) ends ``Error``: it
        lets go of the driver and its commands, and only a record of it stays."""
        driver = context.driver
        if driver is None or (
            self.clusters.cluster_driver_if_running(context.cluster_id) is driver and driver.alive
        ):
            return
        with self._lock:
            context.status = "Error"
            if self._contexts.get(context.context_id) is context:
                del self._contexts[context.context_id]
                self._errored[context.context_id] = context.cluster_id
                while len(self._errored) > MAX_ERRORED_CONTEXTS:
                    self._errored.popitem(last=False)
            context.queue.clear()
            context.commands.clear()
            context.driver = None

    def _context(self, cluster_id: str, context_id: str) -> Context:
        if not context_id:
            raise CommandError("requirement failed: missing contextId")
        with self._lock:
            context = self._contexts.get(context_id)
            if context is None and self._errored.get(context_id) == cluster_id:
                # A record of a context whose driver died: no driver, no commands.
                return Context(context_id, cluster_id, "python", None, status="Error")
        if context is None or context.cluster_id != cluster_id:
            raise CommandError(
                f"ContextNotFound: context {context_id} does not exist on cluster {cluster_id}"
            )
        self._check_driver(context)
        return context

    def context_status(self, cluster_id: str, context_id: str) -> dict[str, Any]:
        context = self._context(cluster_id, context_id)
        return {"id": context.context_id, "status": context.status}

    def destroy_context(self, cluster_id: str, context_id: str) -> None:
        context = self._context(cluster_id, context_id)
        with self._lock:
            self._contexts.pop(context_id, None)
            self._errored.pop(context_id, None)
            driver = context.driver
            if driver is None:
                return  # its driver died: nothing is left to destroy
            pending, context.queue = list(context.queue), deque()
            running = context.running
        for command_id in pending:
            command = context.commands[command_id]
            command.status = "Cancelled"
        if running:
            driver.cancel(f"cmd-{running}")
        if driver.alive:
            driver.execute(
                {
                    "exec_id": f"destroy-{context_id}",
                    "kind": "command_context_destroy",
                    "context_id": context_id,
                },
                lambda result: None,
            )

    # ------------------------------------------------------------------ commands

    def execute(self, cluster_id: str, context_id: str, language: str | None, text: str | None) -> str:
        if not cluster_id:
            raise CommandError("requirement failed: missing clusterId")
        context = self._context(cluster_id, context_id)
        if context.status != "Running":
            raise CommandError(f"Context {context_id} is not running (status {context.status})")
        language = (language or context.language).lower()
        if language not in LANGUAGES:
            raise CommandError(
                f"Language {language} is not supported here; use one of {', '.join(LANGUAGES)}."
            )
        if text is None:
            raise CommandError("requirement failed: missing command")
        command = Command(secrets.token_hex(16), context_id, language, text)
        with self._lock:
            context.commands[command.command_id] = command
            while len(context.commands) > MAX_COMMANDS:
                context.commands.pop(next(iter(context.commands)))
            context.queue.append(command.command_id)
        self.clusters.touch(cluster_id)  # a command is activity: autotermination waits
        self._next(context)
        return command.command_id

    def _next(self, context: Context) -> None:
        with self._lock:
            if context.running is not None or not context.queue:
                return
            driver = context.driver
            if driver is None:
                return  # its driver died meanwhile
            command = context.commands[context.queue.popleft()]
            context.running = command.command_id
            command.status = "Running"
        task = {
            "exec_id": f"cmd-{command.command_id}",
            "kind": "command",
            "context_id": context.context_id,
            "language": command.language,
            "command": command.text,
            "env": {"DATABRICKS_TOKEN": self.clusters.issue_run_token()},
        }
        driver.execute(task, lambda result: self._done(context, command, result))

    def _done(self, context: Context, command: Command, result: dict[str, Any]) -> None:
        state = result.get("result_state")
        if state == "CANCELED" or command.status == "Cancelling":
            command.status = "Cancelled"
            command.results = {
                "resultType": "error",
                "summary": "Command was cancelled",
                "cause": "Command was cancelled",
            }
        elif result.get("command_results") is not None:
            command.status = "Finished"
            command.results = result["command_results"]
        else:
            message = result.get("error") or "The command did not run"
            command.status = "Error"
            command.results = {"resultType": "error", "summary": message, "cause": message}
        with self._lock:
            context.running = None
        self._next(context)

    def _command(self, cluster_id: str, context_id: str, command_id: str) -> tuple[Context, Command]:
        context = self._context(cluster_id, context_id)
        if not command_id:
            raise CommandError("requirement failed: missing commandId")
        command = context.commands.get(command_id)
        if command is None and context.status == "Error" and context.driver is None:
            # Its context lost its driver (and its commands with it): every command ended in error.
            command = Command(command_id, context_id, context.language, "", status="Error")
            command.results = self._lost(cluster_id, context_id)
        if command is None:
            raise CommandError(
                f"CommandNotFound: command {command_id} does not exist in context {context_id}"
            )
        return context, command

    def command_status(self, cluster_id: str, context_id: str, command_id: str) -> dict[str, Any]:
        context, command = self._command(cluster_id, context_id, command_id)
        if context.status == "Error" and command.status in ("Queued", "Running", "Cancelling"):
            command.status = "Error"
            command.results = self._lost(cluster_id, context_id)
        out: dict[str, Any] = {"id": command.command_id, "status": command.status}
        if command.results is not None:
            out["results"] = command.results
        return out

    @staticmethod
    def _lost(cluster_id: str, context_id: str) -> dict[str, Any]:
        return {
            "resultType": "error",
            "summary": LOST_CONTEXT_SUMMARY,
            "cause": f"Cluster {cluster_id} lost the execution context {context_id}",
        }

    def cancel(self, cluster_id: str, context_id: str, command_id: str) -> None:
        context, command = self._command(cluster_id, context_id, command_id)
        with self._lock:
            if command.status == "Queued":
                if command_id in context.queue:
                    context.queue.remove(command_id)
                command.status = "Cancelled"
                command.results = {
                    "resultType": "error",
                    "summary": "Command was cancelled",
                    "cause": "Command was cancelled",
                }
                return
            if command.status != "Running":
                return  # finished commands stay as they ended
            command.status = "Cancelling"
            driver = context.driver
        if driver is not None:
            driver.cancel(f"cmd-{command_id}")
