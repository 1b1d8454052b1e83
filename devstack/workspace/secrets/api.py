"""Secrets API 2.0 over HTTP: ``/api/2.0/secrets/{scopes/*,put,list,get,delete,acls/*}``."""

from __future__ import annotations

import base64
import binascii

from devstack.workspace.http import Request, invalid
from devstack.workspace.iam.backend import user_name_of
from devstack.workspace.secrets.backend import SecretsBackend


class SecretsApi:
    def __init__(self, secrets: SecretsBackend):
        self.secrets = secrets

    def create_scope(self, req: Request):
        self.secrets.create_scope(
            req.require("scope", str),
            req.get("scope_backend_type", str),
            req.get("initial_manage_principal", str),
            user_name_of(req.principal),
        )
        return {}

    def list_scopes(self, req: Request):
        scopes = self.secrets.list_scopes()
        return {"scopes": scopes} if scopes else {}

    def delete_scope(self, req: Request):
        self.secrets.delete_scope(req.require("scope", str))
        return {}

    def put(self, req: Request):
        scope = req.require("scope", str)
        key = req.require("key", str)
        string_value = req.get("string_value", str)
        bytes_value = req.get("bytes_value", str)
        if (string_value is None) == (bytes_value is None):
            raise invalid("Exactly one of string_value or bytes_value must be specified.")
        if string_value is not None:
            value = string_value.encode("utf-8")
        else:
            try:
                value = base64.b64decode(bytes_value, validate=True)
            except (binascii.Error, ValueError):
                raise invalid("Invalid value for field bytes_value: it is not valid base64.") from None
        self.secrets.put(scope, key, value)
        return {}

    def list_secrets(self, req: Request):
        secrets = self.secrets.list_secrets(req.require("scope", str))
        return {"secrets": secrets} if secrets else {}

    def get(self, req: Request):
        scope = req.require("scope", str)
        key = req.require("key", str)
        value = self.secrets.get(scope, key)
        return {"key": key, "value": base64.b64encode(value).decode("ascii")}

    def delete(self, req: Request):
        self.secrets.delete(req.require("scope", str), req.require("key", str))
        return {}

    def put_acl(self, req: Request):
        self.secrets.put_acl(
            req.require("scope", str), req.require("principal", str), req.require("permission", str)
        )
        return {}

    def get_acl(self, req: Request):
        return self.secrets.get_acl(req.require("scope", str), req.require("principal", str))

    def list_acls(self, req: Request):
        acls = self.secrets.list_acls(req.require("scope", str))
        return {"items": acls} if acls else {}

    def delete_acl(self, req: Request):
        self.secrets.delete_acl(req.require("scope", str), req.require("principal", str))
        return {}
