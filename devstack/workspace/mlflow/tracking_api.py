"""``/api/2.0/mlflow/*`` tracking on the workspace: MLflow's REST API as Databricks answers it.

Every endpoint of MLflow's ``MlflowService`` (experiments, runs, metrics, logged models, ...)
is forwarded to the MLflow server of ``--mlflow-tracking-uri``; responses that carry artifact
locations are parsed into the service's own response protos, given Databricks' ``dbfs:/``
locations and rendered again. The artifact credentials of ``DatabricksMlflowArtifactsService``
are answered here with signed URLs of this workspace (see :mod:`.tracking_backend`).
The Unity Catalog registry (``/api/2.0/mlflow/unity-catalog/*``) lives beside this module.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from typing import Any

from google.protobuf.message import Message
from mlflow.protos import databricks_artifacts_pb2 as artifacts_pb2
from mlflow.protos import databricks_pb2, service_pb2
from mlflow.utils.proto_json_utils import message_to_json, parse_dict

from devstack.workspace.http import ApiError, Handler, Request, Response, raw_body
from devstack.workspace.mlflow.tracking_backend import (
    WORKSPACE_TAG,
    TrackingBackend,
    TrackingError,
    experiment_artifact_location,
    logged_model_artifact_uri,
    relative_artifact_path,
    run_artifact_uri,
)

log = logging.getLogger("devstack.workspace.mlflow")

# Where the signed artifact URLs point (outside /api/: the URL's signature is its credential).
SIGNED_PATH = "/devstack/mlflow-artifacts"
AWS_PRESIGNED_URL = artifacts_pb2.ArtifactCredentialType.Value("AWS_PRESIGNED_URL")

# Messages whose artifact locations are rewritten, by proto full name.
_TRANSLATED = ("mlflow.Experiment", "mlflow.RunInfo", "mlflow.LoggedModelInfo")


def _carries_locations(descriptor, seen: set[str] | None = None) -> bool:
    seen = set() if seen is None else seen
    if descriptor.full_name in _TRANSLATED:
        return True
    if descriptor.full_name in seen:
        return False
    seen.add(descriptor.full_name)
    return any(
        field.message_type is not None and _carries_locations(field.message_type, seen)
        for field in descriptor.fields
    )


def to_databricks(message: Message) -> None:
    """Give every experiment, run and logged model in ``message`` Databricks' artifact location."""
    name = message.DESCRIPTOR.full_name
    if name == "mlflow.Experiment" and message.experiment_id:
        message.artifact_location = experiment_artifact_location(message.experiment_id)
    elif name == "mlflow.RunInfo" and message.run_id:
        message.artifact_uri = run_artifact_uri(message.experiment_id, message.run_id)
    elif name == "mlflow.LoggedModelInfo" and message.model_id:
        message.artifact_uri = logged_model_artifact_uri(message.experiment_id, message.model_id)
    for field, value in message.ListFields():
        if field.message_type is None or field.message_type.GetOptions().map_entry:
            continue
        for item in value if field.is_repeated else [value]:
            to_databricks(item)


def service_routes(service) -> list[tuple[type[Message], str, str]]:
    """(request class, HTTP method, path) of every endpoint of ``service``, as ``mlflow server``
    derives them from the protos' rpc options (``/api/<since major>.0<path>``)."""
    routes = []
    for method in service.DESCRIPTOR.methods:
        request_class = service().GetRequestClass(method)
        for endpoint in method.GetOptions().Extensions[databricks_pb2.rpc].endpoints:
            routes.append((request_class, endpoint.method, f"/api/{endpoint.since.major}.0{endpoint.path}"))
    return routes


def _render(message: Message) -> dict[str, Any]:
    return json.loads(message_to_json(message, pretty=False))


def _parse(request: Request, proto: Message) -> Message:
    values = dict(request.body)
    for key, items in request.query.items():
        values.setdefault(key, items if len(items) > 1 else items[0])
    try:
        parse_dict(values, proto)
    except Exception as exc:  # google.protobuf.json_format.ParseError and friends
        raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Invalid request: {exc}") from None
    return proto


class TrackingApi:
    """MLflow's tracking calls, forwarded to the MLflow server through :class:`TrackingBackend`, and
    the artifact credentials of ``DatabricksMlflowArtifactsService``.

    :param tree: the workspace tree, where experiments show (object type MLFLOW_EXPERIMENT).
    :param base_url: the workspace's address, for signed URLs when a request names no Host.
    """

    def __init__(self, backend: TrackingBackend, tree: Any, *, workspace_name: str, base_url: str):
        self.backend = backend
        self.tree = tree
        self.workspace_name = workspace_name
        self.base_url = base_url
        self._before = {
            service_pb2.GetExperimentByName: self._get_by_name,
            service_pb2.CreateRun: self._run_owner,
        }
        self._after = {
            service_pb2.ListArtifacts: self._list_artifacts_root,
            service_pb2.ListLoggedModelArtifacts: self._list_model_artifacts_root,
        }
        self._replaced = {
            service_pb2.CreateExperiment: self.create_experiment,
            service_pb2.UpdateExperiment: self.update_experiment,
            service_pb2.DeleteExperiment: self.delete_experiment,
            service_pb2.RestoreExperiment: self.restore_experiment,
        }

    # ------------------------------------------------------------------ routes from mlflow's protos

    def service_calls(self) -> list[tuple[str, str, Handler]]:
        """(method, path, handler) of every ``/mlflow/`` call of MLflow's ``MlflowService``."""
        calls = []
        seen: set[tuple[str, str]] = set()
        for request_class, method, path in service_routes(service_pb2.MlflowService):
            if "/mlflow/" not in path or (method, path) in seen:
                continue  # e.g. a path in the protos that lacks its slash
            seen.add((method, path))
            # {assessment.trace_id} -> {assessment_trace_id}: the router's names are identifiers.
            route = re.sub(r"\{([\w.]+)\}", lambda m: "{" + m.group(1).replace(".", "_") + "}", path)
            calls.append((method, route, self._handler(request_class)))
        return calls

    def artifact_credential_calls(self) -> list[tuple[str, str, Handler]]:
        """(method, path, handler) of the ``DatabricksMlflowArtifactsService`` calls answered here."""
        handlers = {
            artifacts_pb2.GetCredentialsForWrite: self._run_credentials(
                "w", artifacts_pb2.GetCredentialsForWrite
            ),
            artifacts_pb2.GetCredentialsForRead: self._run_credentials(
                "r", artifacts_pb2.GetCredentialsForRead
            ),
            artifacts_pb2.GetCredentialsForLoggedModelUpload: self._model_credentials(
                "w", artifacts_pb2.GetCredentialsForLoggedModelUpload
            ),
            artifacts_pb2.GetCredentialsForLoggedModelDownload: self._model_credentials(
                "r", artifacts_pb2.GetCredentialsForLoggedModelDownload
            ),
            artifacts_pb2.CreateMultipartUpload: self.multipart,
            artifacts_pb2.CompleteMultipartUpload: self.multipart,
            artifacts_pb2.GetPresignedUploadPartUrl: self.multipart,
        }
        return [
            (method, path, handlers[request_class])
            for request_class, method, path in service_routes(artifacts_pb2.DatabricksMlflowArtifactsService)
            if request_class in handlers
        ]

    def _handler(self, request_class: type[Message]) -> Handler:
        response_class = getattr(request_class, "Response", None)
        translate = response_class is not None and (
            _carries_locations(response_class.DESCRIPTOR) or request_class in self._after
        )
        prepare, rewrite = self._before.get(request_class), self._after.get(request_class)
        own = self._replaced.get(request_class)

        def handler(request: Request):
            def run(request: Request):
                if own is not None:
                    return own(request)
                if prepare is not None:
                    prepare(request)
                return self._forwarded(request, response_class if translate else None, rewrite)

            return _call(run, request)

        return handler

    def _forwarded(self, request: Request, response_proto: type[Message] | None, rewrite) -> dict[str, Any]:
        query = request.query if request.method in ("GET", "DELETE") else None
        body = None if request.method in ("GET", "DELETE") and not request.body else request.body
        payload = self.backend.forward(request.method, request.path, query, body)
        if response_proto is None:
            return payload
        message = response_proto()
        parse_dict(payload, message)
        to_databricks(message)
        rendered = _render(message)
        if rewrite is not None:
            rewrite(request, rendered)
        return rendered

    # ------------------------------------------------------------------ the workspace tree

    def _record_experiment(self, path: str, experiment_id: str) -> None:
        """Experiments show in the workspace tree, as on Databricks (object type MLFLOW_EXPERIMENT)."""
        if self.tree is None:
            return
        try:
            self.tree.put(path, "MLFLOW_EXPERIMENT", str(experiment_id).encode(), None, True)
        except ApiError as exc:  # e.g. its folder was deleted meanwhile: the experiment stands
            log.warning("experiment %s (%s) not shown in the workspace tree: %s", path, experiment_id, exc)

    def _forget_experiment(self, path: str) -> None:
        entry = self.tree.lookup(path) if self.tree is not None else None
        if entry is not None and entry.object_type == "MLFLOW_EXPERIMENT":
            self.tree.delete(path, False)

    def _experiment(self, experiment_id: Any) -> dict[str, Any]:
        query = {"experiment_id": str(experiment_id or "")}
        return self.backend.forward("GET", "/api/2.0/mlflow/experiments/get", query, None)["experiment"]

    # ------------------------------------------------------------------ request rules

    def create_experiment(self, request: Request) -> dict[str, Any]:
        name = self.backend.experiment_name(request.body.get("name"))
        if request.body.get("artifact_location"):
            raise ApiError(
                400,
                "INVALID_PARAMETER_VALUE",
                f"artifact_location {request.body['artifact_location']!r} is not supported here: the "
                "workspace stores experiment artifacts under dbfs:/databricks/mlflow-tracking; leave it empty.",
            )
        tags = [t for t in request.body.get("tags") or [] if t.get("key") != WORKSPACE_TAG]
        body = {
            **request.body,
            "name": name,
            "tags": [*tags, {"key": WORKSPACE_TAG, "value": self.workspace_name}],
        }
        body.pop("artifact_location", None)
        created = self.backend.forward("POST", request.path, None, body)
        self._record_experiment(name, created["experiment_id"])
        return created

    def update_experiment(self, request: Request) -> dict[str, Any]:
        if request.body.get("new_name") is None:
            return self.backend.forward("POST", request.path, None, request.body)
        new_name = self.backend.experiment_name(request.body["new_name"], "new_name")
        old = self._experiment(request.body.get("experiment_id"))
        answer = self.backend.forward("POST", request.path, None, {**request.body, "new_name": new_name})
        self._forget_experiment(old["name"])
        self._record_experiment(new_name, old["experiment_id"])
        return answer

    def delete_experiment(self, request: Request) -> dict[str, Any]:
        old = self._experiment(request.body.get("experiment_id"))
        answer = self.backend.forward("POST", request.path, None, request.body)
        self._forget_experiment(old["name"])
        return answer

    def restore_experiment(self, request: Request) -> dict[str, Any]:
        answer = self.backend.forward("POST", request.path, None, request.body)
        restored = self._experiment(request.body.get("experiment_id"))
        self._record_experiment(restored["name"], restored["experiment_id"])
        return answer

    @staticmethod
    def _get_by_name(request: Request) -> None:
        name = request.get("experiment_name", str)
        if name and name.startswith("/Workspace/"):
            request.query["experiment_name"] = [name[len("/Workspace") :]]
            request.body.pop("experiment_name", None)

    def _list_artifacts_root(self, request: Request, rendered: dict[str, Any]) -> None:
        run_id = request.get("run_id", str) or request.get("run_uuid", str)
        experiment_id, _ = self.backend.run_root(run_id)
        rendered["root_uri"] = run_artifact_uri(experiment_id, run_id)

    def _list_model_artifacts_root(self, request: Request, rendered: dict[str, Any]) -> None:
        model_id = request.path_params.get("model_id", "")
        experiment_id, _ = self.backend.logged_model_root(model_id)
        rendered["root_uri"] = logged_model_artifact_uri(experiment_id, model_id)

    @staticmethod
    def _run_owner(request: Request) -> None:
        # Databricks records the signed-in caller as the run's user, not what the client claims.
        if request.principal is not None:
            request.body["user_id"] = request.principal.name

    # ------------------------------------------------------------------ artifacts

    def _request_base_url(self, request: Request) -> str:
        # The client reached us at this scheme and Host: the signed URL must be reachable alike.
        host = request.headers.get("host") or self.base_url.split("://", 1)[1]
        return f"{request.scheme}://{host}"

    def _credential(self, request: Request, server_root: str, relative: str, permission: str):
        query = self.backend.signed_query(server_root, relative, permission)
        return artifacts_pb2.ArtifactCredentialInfo(
            signed_uri=f"{self._request_base_url(request)}{SIGNED_PATH}?{query}",
            type=AWS_PRESIGNED_URL,
        )

    def _run_credentials(self, permission: str, proto_class) -> Handler:
        def handler(request: Request):
            proto = _parse(request, proto_class())
            _, server_root = self.backend.run_root(proto.run_id)
            response = proto_class.Response()
            for path in proto.path:
                info = self._credential(request, server_root, path, permission)
                info.run_id, info.path = proto.run_id, path
                response.credential_infos.append(info)
            return _render(response)

        return lambda request: _call(handler, request)

    def _model_credentials(self, permission: str, proto_class) -> Handler:
        def handler(request: Request):
            proto = _parse(request, proto_class())
            model_id = request.path_params["model_id"]
            _, server_root = self.backend.logged_model_root(model_id)
            response = proto_class.Response()
            for path in proto.paths:
                entry = response.credentials.add(model_id=model_id)  # in the order of `paths`
                entry.credential_info.CopyFrom(self._credential(request, server_root, path, permission))
            return _render(response)

        return lambda request: _call(handler, request)

    def multipart(self, request: Request):
        # Only files above MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE (500 MB by default) come here.
        raise ApiError(
            501,
            "NOT_IMPLEMENTED",
            "Multipart artifact uploads are not emulated: raise MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE "
            "above the file's size to upload it in one request.",
        )

    @raw_body
    def signed_bytes(self, request: Request):
        """The bytes behind a signed artifact URL (GET), or their upload (PUT)."""
        return _call(self._signed_bytes, request)

    def _signed_bytes(self, request: Request):
        path = request.get("path", str) or ""
        permission = "w" if request.method == "PUT" else "r"
        self.backend.signer.check(path, permission, request.get("se", str), request.get("sig", str))
        relative_artifact_path(path)  # signed by us, but never let a path climb out
        if request.method == "PUT":
            data = request.raw_body
            answer = self.backend.server.artifact(
                "PUT", path, data, {"Content-Type": "application/octet-stream"}
            )
            if answer.status >= 400:
                raise ApiError(answer.status, "INTERNAL_ERROR", answer.data[:300].decode(errors="replace"))
            return Response(
                b"", "application/octet-stream", 200, {"ETag": f'"{hashlib.md5(data).hexdigest()}"'}
            )
        headers = {"Range": request.headers["range"]} if "range" in request.headers else {}
        answer = self.backend.server.artifact("GET", path, None, headers)
        if answer.status == 404:
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Artifact {path} does not exist.")
        if answer.status >= 400:
            raise ApiError(answer.status, "INTERNAL_ERROR", answer.data[:300].decode(errors="replace"))
        passed = {
            k: answer.headers[k] for k in ("Content-Range", "ETag", "Accept-Ranges") if k in answer.headers
        }
        return Response(answer.data, "application/octet-stream", answer.status, passed)


def _call(fn, request: Request):
    try:
        return fn(request)
    except TrackingError as exc:
        raise ApiError(exc.status, exc.error_code, exc.message) from None


class UnconfiguredTrackingApi:
    """A workspace started without an MLflow server: its tracking calls say so, instead of
    ENDPOINT_NOT_FOUND."""

    def __init__(self, workspace_name: str):
        self.workspace_name = workspace_name

    def unconfigured(self, request: Request):
        raise ApiError(
            501,
            "FEATURE_DISABLED",
            f"MLflow tracking is not available on workspace {self.workspace_name}: start it with "
            "--mlflow-tracking-uri <the devstack's MLflow server>.",
        )
