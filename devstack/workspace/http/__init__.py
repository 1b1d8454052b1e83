"""The HTTP toolkit every API module of the emulated workspace builds on.

A service's ``*Api`` class has handler methods that take a :class:`Request` and return a JSON-able
dict (status 200) or a :class:`Response`, or raise :class:`ApiError`, whose body is Databricks'
``{"error_code": ..., "message": ...}``. routes.py maps paths to those handlers with a
:class:`Router`.
"""

from devstack.workspace.http.errors import ApiError, already_exists, invalid, not_found
from devstack.workspace.http.request import Handler, Request, Response, coerce, pagination, raw_body
from devstack.workspace.http.router import Router

__all__ = [
    "ApiError",
    "Handler",
    "Request",
    "Response",
    "Router",
    "already_exists",
    "coerce",
    "invalid",
    "not_found",
    "pagination",
    "raw_body",
]
