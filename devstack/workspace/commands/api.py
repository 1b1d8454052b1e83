"""Command Execution API 1.2 (``/api/1.2/contexts/*``, ``/api/1.2/commands/*``).

Fields are camelCase (``clusterId``, ``contextId``, ``commandId``) and errors are API 1.2's
``{"error": "..."}`` bodies without an ``error_code``, as databricks-sdk's ``command_execution``
and its remote ``dbutils`` read them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from devstack.workspace.commands.backend import CommandError, CommandsBackend
from devstack.workspace.http import Request, Response


def _answers(handler: Callable[[CommandsApi, Request], Any]):
    """Render :class:`CommandError` as API 1.2 does."""

    def wrapper(self: CommandsApi, request: Request):
        try:
            return handler(self, request)
        except CommandError as exc:
            body = json.dumps({"error": exc.message}).encode()
            return Response(body, content_type="application/json", status=exc.status)

    wrapper.__name__ = handler.__name__
    wrapper.__doc__ = handler.__doc__
    return wrapper


def _text(request: Request, name: str) -> str:
    value = request.get(name)
    return "" if value is None else str(value)


class CommandsApi:
    def __init__(self, commands: CommandsBackend):
        self.commands = commands

    @_answers
    def create_context(self, request: Request):
        context_id = self.commands.create_context(_text(request, "clusterId"), _text(request, "language"))
        return {"id": context_id}

    @_answers
    def context_status(self, request: Request):
        return self.commands.context_status(_text(request, "clusterId"), _text(request, "contextId"))

    @_answers
    def destroy_context(self, request: Request):
        self.commands.destroy_context(_text(request, "clusterId"), _text(request, "contextId"))
        return {"id": _text(request, "contextId")}

    @_answers
    def execute(self, request: Request):
        command_id = self.commands.execute(
            _text(request, "clusterId"),
            _text(request, "contextId"),
            request.get("language"),
            request.get("command"),
        )
        return {"id": command_id}

    @_answers
    def command_status(self, request: Request):
        return self.commands.command_status(
            _text(request, "clusterId"), _text(request, "contextId"), _text(request, "commandId")
        )

    @_answers
    def cancel(self, request: Request):
        self.commands.cancel(
            _text(request, "clusterId"), _text(request, "contextId"), _text(request, "commandId")
        )
        return {"id": _text(request, "commandId")}
