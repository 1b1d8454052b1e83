"""``/api/2.0/mlflow/unity-catalog/*``: the Unity Catalog model registry as ``databricks-uc`` calls it.

Paths, requests and answers come from mlflow's own protos (``databricks_uc_registry_*`` and
``databricks_filesystem_service``), so they cannot drift from the client's. Model files move as
on Databricks' default storage: ``generate-temporary-credentials`` answers ``DEFAULT_STORAGE``,
so the client asks ``/api/2.0/fs/create-upload-url`` / ``create-download-url`` for presigned
URLs, which this workspace serves itself (``/presigned/files``, signed and expiring).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from devstack.workspace.http import ApiError, Request, Response, invalid, raw_body
from devstack.workspace.mlflow.uc_registry_backend import PresignedUrls, UcModelRegistry, Version

PRESIGNED_PATH = "/presigned/files"


def _protos():
    """mlflow's proto modules and the (path, method) of every call (imported on first use)."""
    from mlflow.protos import databricks_filesystem_service_pb2 as fs
    from mlflow.protos import databricks_uc_registry_messages_pb2 as uc
    from mlflow.protos.databricks_uc_registry_service_pb2 import UcModelRegistryService
    from mlflow.utils.rest_utils import _REST_API_PATH_PREFIX, extract_api_info_for_service

    info = {
        **extract_api_info_for_service(UcModelRegistryService, _REST_API_PATH_PREFIX),
        **extract_api_info_for_service(fs.FilesystemService, _REST_API_PATH_PREFIX),
    }
    return uc, fs, info


def _parse(request: Request, message_cls: type) -> Any:
    """The request as its proto: a JSON body, or (GET) the query string."""
    from google.protobuf.json_format import ParseError
    from mlflow.utils.proto_json_utils import parse_dict

    if request.body:
        data = dict(request.body)
    else:
        data = {k: v[0] if len(v) == 1 else v for k, v in request.query.items()}
    message = message_cls()
    try:
        parse_dict(data, message)
    except ParseError as exc:
        raise invalid(f"Invalid request to {request.path}: {exc}") from None
    return message


def _render(message: Any) -> dict[str, Any]:
    from mlflow.utils.proto_json_utils import message_to_json

    return json.loads(message_to_json(message))


def _registered_model(uc, rm: Any, *, full: bool = True) -> Any:
    proto = uc.RegisteredModel(
        name=rm.name,
        creation_timestamp=rm.creation_timestamp or 0,
        last_updated_timestamp=rm.last_updated_timestamp or 0,
        description=rm.description or "",
    )
    if full:  # search answers carry neither aliases nor tags, as on Databricks
        proto.aliases.extend(
            uc.RegisteredModelAlias(alias=a, version=str(v)) for a, v in sorted(rm.aliases.items())
        )
        proto.tags.extend(uc.RegisteredModelTag(key=k, value=v) for k, v in sorted(rm.tags.items()))
    return proto


def _model_version(uc, version: Version, *, full: bool = True) -> Any:
    mv = version.mv
    proto = uc.ModelVersion(
        name=mv.name,
        version=str(mv.version),
        creation_timestamp=mv.creation_timestamp or 0,
        last_updated_timestamp=mv.last_updated_timestamp or 0,
        user_id=mv.user_id or "",
        description=mv.description or "",
        source=mv.source or "",
        run_id=mv.run_id or "",
        run_tracking_server_id=version.run_tracking_server_id,
        status=uc.ModelVersionStatus.Value(version.status),
        storage_location=version.storage_location,
        model_id=version.model_id,
    )
    if full:
        proto.aliases.extend(uc.RegisteredModelAlias(alias=a, version=str(mv.version)) for a in mv.aliases)
        proto.tags.extend(uc.ModelVersionTag(key=k, value=v) for k, v in sorted(version.tags.items()))
    return proto


class UcRegistryApi:
    """The Unity Catalog model registry calls of ``databricks-uc``, and the presigned URLs its
    model files move through."""

    def __init__(self, registry: UcModelRegistry, urls: PresignedUrls, *, base_url: str):
        self.registry = registry
        self.urls = urls
        self.base_url = base_url
        # Resolved on first request: importing mlflow's protos costs a second at start-up.
        self._proto_modules: tuple[Any, Any] | None = None

    def _protos(self) -> tuple[Any, Any]:
        if self._proto_modules is None:
            uc, fs, _ = _protos()
            self._proto_modules = uc, fs
        return self._proto_modules

    def _request(self, request: Request, request_name: str) -> tuple[Any, Any]:
        """mlflow's UC registry messages module, and the request parsed as its ``request_name``."""
        uc, fs = self._protos()
        message_cls = getattr(uc, request_name, None) or getattr(fs, request_name)
        return uc, _parse(request, message_cls)

    # -- registered models ------------------------------------------------------------------

    def create_registered_model(self, request: Request):
        uc, req = self._request(request, "CreateRegisteredModelRequest")
        rm = self.registry.create_registered_model(
            req.name, req.description, {t.key: t.value for t in req.tags}
        )
        return _render(uc.CreateRegisteredModelResponse(registered_model=_registered_model(uc, rm)))

    def get_registered_model(self, request: Request):
        uc, req = self._request(request, "GetRegisteredModelRequest")
        rm = self.registry.get_registered_model(req.name)
        return _render(uc.GetRegisteredModelResponse(registered_model=_registered_model(uc, rm)))

    def update_registered_model(self, request: Request):
        uc, req = self._request(request, "UpdateRegisteredModelRequest")
        if req.HasField("deployment_job_id") and req.deployment_job_id:
            raise invalid("deployment_job_id: deployment jobs are not emulated by the devstack.")
        rm = self.registry.update_registered_model(
            req.name,
            description=req.description if req.HasField("description") else None,
            new_name=req.new_name or None,
        )
        return _render(uc.UpdateRegisteredModelResponse(registered_model=_registered_model(uc, rm)))

    def delete_registered_model(self, request: Request):
        uc, req = self._request(request, "DeleteRegisteredModelRequest")
        self.registry.delete_registered_model(req.name)
        return {}

    def search_registered_models(self, request: Request):
        uc, req = self._request(request, "SearchRegisteredModelsRequest")
        models, token = self.registry.search_registered_models(
            req.max_results if req.HasField("max_results") else None, req.page_token
        )
        answer = uc.SearchRegisteredModelsResponse(
            registered_models=[_registered_model(uc, rm, full=False) for rm in models],
            next_page_token=token or "",
        )
        return _render(answer)

    def set_registered_model_tag(self, request: Request):
        uc, req = self._request(request, "SetRegisteredModelTagRequest")
        self.registry.set_registered_model_tag(req.name, req.key, req.value)
        return {}

    def delete_registered_model_tag(self, request: Request):
        uc, req = self._request(request, "DeleteRegisteredModelTagRequest")
        self.registry.delete_registered_model_tag(req.name, req.key)
        return {}

    # -- aliases ----------------------------------------------------------------------------

    def set_alias(self, request: Request):
        uc, req = self._request(request, "SetRegisteredModelAliasRequest")
        self.registry.set_alias(req.name, req.alias, req.version)
        return {}

    def delete_alias(self, request: Request):
        uc, req = self._request(request, "DeleteRegisteredModelAliasRequest")
        self.registry.delete_alias(req.name, req.alias)
        return {}

    def get_by_alias(self, request: Request):
        uc, req = self._request(request, "GetModelVersionByAliasRequest")
        version = self.registry.get_version_by_alias(req.name, req.alias)
        return _render(uc.GetModelVersionByAliasResponse(model_version=_model_version(uc, version)))

    # -- model versions ---------------------------------------------------------------------

    def create_model_version(self, request: Request):
        uc, req = self._request(request, "CreateModelVersionRequest")
        version = self.registry.create_model_version(
            req.name,
            req.source,
            run_id=req.run_id,
            description=req.description,
            tags={t.key: t.value for t in req.tags},
            model_id=req.model_id,
            run_tracking_server_id=req.run_tracking_server_id,
        )
        return _render(uc.CreateModelVersionResponse(model_version=_model_version(uc, version)))

    def finalize(self, request: Request):
        uc, req = self._request(request, "FinalizeModelVersionRequest")
        version = self.registry.finalize_model_version(req.name, req.version)
        return _render(uc.FinalizeModelVersionResponse(model_version=_model_version(uc, version)))

    def get_model_version(self, request: Request):
        uc, req = self._request(request, "GetModelVersionRequest")
        version = self.registry.get_model_version(req.name, req.version)
        return _render(uc.GetModelVersionResponse(model_version=_model_version(uc, version)))

    def update_model_version(self, request: Request):
        uc, req = self._request(request, "UpdateModelVersionRequest")
        version = self.registry.update_model_version(
            req.name, req.version, req.description if req.HasField("description") else None
        )
        return _render(uc.UpdateModelVersionResponse(model_version=_model_version(uc, version)))

    def delete_model_version(self, request: Request):
        uc, req = self._request(request, "DeleteModelVersionRequest")
        self.registry.delete_model_version(req.name, req.version)
        return {}

    def search_model_versions(self, request: Request):
        uc, req = self._request(request, "SearchModelVersionsRequest")
        versions, token = self.registry.search_model_versions(
            req.filter or None, req.max_results if req.HasField("max_results") else None, req.page_token
        )
        answer = uc.SearchModelVersionsResponse(
            model_versions=[_model_version(uc, v, full=False) for v in versions], next_page_token=token or ""
        )
        return _render(answer)

    def set_model_version_tag(self, request: Request):
        uc, req = self._request(request, "SetModelVersionTagRequest")
        self.registry.set_model_version_tag(req.name, req.version, req.key, req.value)
        return {}

    def delete_model_version_tag(self, request: Request):
        uc, req = self._request(request, "DeleteModelVersionTagRequest")
        self.registry.delete_model_version_tag(req.name, req.version, req.key)
        return {}

    def temporary_credentials(self, request: Request):
        uc, req = self._request(request, "GenerateTemporaryModelVersionCredentialsRequest")
        if req.operation == uc.MODEL_VERSION_OPERATION_UNSPECIFIED:
            raise invalid(
                "Missing required field: operation (MODEL_VERSION_OPERATION_READ or "
                "MODEL_VERSION_OPERATION_READ_WRITE)."
            )
        write = req.operation == uc.MODEL_VERSION_OPERATION_READ_WRITE
        expires = self.registry.temporary_credentials(req.name, req.version, write)
        credentials = uc.TemporaryCredentials(expiration_time=expires, storage_mode=uc.DEFAULT_STORAGE)
        return _render(uc.GenerateTemporaryModelVersionCredentialsResponse(credentials=credentials))

    def download_uri(self, request: Request):
        uc, req = self._request(request, "GetModelVersionDownloadUriRequest")
        uri = self.registry.download_uri(req.name, req.version)
        return _render(uc.GetModelVersionDownloadUriResponse(artifact_uri=uri))

    def sdk_repository_enabled(self, request: Request):
        uc, req = self._request(request, "IsDatabricksSdkModelsArtifactRepositoryEnabledRequest")
        # False: the client moves files through presigned URLs (DEFAULT_STORAGE), not the SDK.
        return _render(
            uc.IsDatabricksSdkModelsArtifactRepositoryEnabledResponse(
                is_databricks_sdk_models_artifact_repository_enabled=False
            )
        )

    def emit_lineage(self, request: Request):
        uc, req = self._request(request, "EmitModelVersionLineageRequest")
        self.registry.get_model_version(req.name, req.version)  # lineage is not kept; the version must exist
        return {}

    # -- presigned URLs (Files API) ---------------------------------------------------------

    def _presigned(self, path: str, op: str) -> str:
        return f"{self.base_url}{PRESIGNED_PATH}?{urlencode(self.urls.sign(path, op))}"

    def create_upload_url(self, request: Request):
        uc, req = self._request(request, "CreateUploadUrlRequest")
        fs = self._protos()[1]
        self.registry.check_files_path(_files_path(req.path), write=True)
        return _render(fs.CreateUploadUrlResponse(url=self._presigned(req.path, "write")))

    def create_download_url(self, request: Request):
        uc, req = self._request(request, "CreateDownloadUrlRequest")
        fs = self._protos()[1]
        self.registry.check_files_path(_files_path(req.path), write=False)
        return _render(fs.CreateDownloadUrlResponse(url=self._presigned(req.path, "read")))

    @staticmethod
    def _query(request: Request, name: str) -> str:
        values = request.query.get(name) or [""]
        return values[0]

    @raw_body
    def put_file(self, request: Request) -> Response:
        path = self.urls.verify(self._query(request, "t"), self._query(request, "sig"), "write")
        target = self.registry.check_files_path(path, write=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".uploading")
        partial.write_bytes(request.raw_body)
        partial.replace(target)
        return Response(b"", content_type="application/octet-stream", status=201)

    def get_file(self, request: Request) -> Response:
        path = self.urls.verify(self._query(request, "t"), self._query(request, "sig"), "read")
        target = self.registry.check_files_path(path, write=False)
        if not target.is_file():
            raise ApiError(404, "NOT_FOUND", f"File {path} does not exist.")
        return Response(target.read_bytes(), content_type="application/octet-stream")

    # -- stages: refused for Unity Catalog models --------------------------------------------

    def transition_stage(self, request: Request) -> Any:
        name = request.require("name", str)
        if "." in name:
            # The workspace registry refuses dotted names as Databricks does (its wording, as quoted
            # in databricks/mlops-stacks PR #131); Unity Catalog has no stages, aliases replace them.
            raise invalid(
                f"Invalid name '{name}'. A workspace registered model name cannot contain periods (.). "
                f"'{name}' is a Unity Catalog model and Unity Catalog has no stages: set an alias instead "
                "(MlflowClient(registry_uri='databricks-uc').set_registered_model_alias(name, alias, version)) "
                "and load the model as models:/<name>@<alias>."
            )
        # Workspace-registry models live in the same MLflow server: their stages still move.
        mv = self.registry._call(
            "transition_model_version_stage",
            name,
            request.require("version", str),
            request.require("stage", str),
            request.get("archive_existing_versions", bool, False),
        )
        return {"model_version": _render(mv.to_proto())}


def _files_path(path: str) -> str:
    if not path or not path.startswith("/"):
        raise invalid(
            f"Invalid path {path!r}: give an absolute Files-API path such as /Models/... or /Volumes/..."
        )
    return path
