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

from devstack.workspace.context import WorkspaceContext
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


def register(router, ctx: WorkspaceContext) -> None:
    registry = UcModelRegistry(ctx.mlflow_tracking_uri, getattr(ctx, "metastore", None))
    urls = PresignedUrls()
    ctx.services["uc_registry"] = registry
    # Resolved on first request: importing mlflow's protos costs a second at start-up.
    cache: dict[str, Any] = {}

    def protos():
        if not cache:
            cache["uc"], cache["fs"], cache["info"] = _protos()
        return cache["uc"], cache["fs"]

    def route(request_name: str, path: str, method: str):
        def decorator(fn):
            def handler(request: Request) -> Any:
                uc, fs = protos()
                message_cls = getattr(uc, request_name, None) or getattr(fs, request_name)
                return fn(uc, _parse(request, message_cls))

            router.add(method, "", path, handler)
            return fn

        return decorator

    base = "/api/2.0/mlflow/unity-catalog"

    # -- registered models ------------------------------------------------------------------

    @route("CreateRegisteredModelRequest", f"{base}/registered-models/create", "POST")
    def create_registered_model(uc, req):
        rm = registry.create_registered_model(req.name, req.description, {t.key: t.value for t in req.tags})
        return _render(uc.CreateRegisteredModelResponse(registered_model=_registered_model(uc, rm)))

    @route("GetRegisteredModelRequest", f"{base}/registered-models/get", "GET")
    def get_registered_model(uc, req):
        rm = registry.get_registered_model(req.name)
        return _render(uc.GetRegisteredModelResponse(registered_model=_registered_model(uc, rm)))

    @route("UpdateRegisteredModelRequest", f"{base}/registered-models/update", "PATCH")
    def update_registered_model(uc, req):
        if req.HasField("deployment_job_id") and req.deployment_job_id:
            raise invalid("deployment_job_id: deployment jobs are not emulated by the devstack.")
        rm = registry.update_registered_model(
            req.name,
            description=req.description if req.HasField("description") else None,
            new_name=req.new_name or None,
        )
        return _render(uc.UpdateRegisteredModelResponse(registered_model=_registered_model(uc, rm)))

    @route("DeleteRegisteredModelRequest", f"{base}/registered-models/delete", "DELETE")
    def delete_registered_model(uc, req):
        registry.delete_registered_model(req.name)
        return {}

    @route("SearchRegisteredModelsRequest", f"{base}/registered-models/search", "GET")
    def search_registered_models(uc, req):
        models, token = registry.search_registered_models(
            req.max_results if req.HasField("max_results") else None, req.page_token
        )
        answer = uc.SearchRegisteredModelsResponse(
            registered_models=[_registered_model(uc, rm, full=False) for rm in models],
            next_page_token=token or "",
        )
        return _render(answer)

    @route("SetRegisteredModelTagRequest", f"{base}/registered-models/set-tag", "POST")
    def set_registered_model_tag(uc, req):
        registry.set_registered_model_tag(req.name, req.key, req.value)
        return {}

    @route("DeleteRegisteredModelTagRequest", f"{base}/registered-models/delete-tag", "DELETE")
    def delete_registered_model_tag(uc, req):
        registry.delete_registered_model_tag(req.name, req.key)
        return {}

    # -- aliases ----------------------------------------------------------------------------

    @route("SetRegisteredModelAliasRequest", f"{base}/registered-models/alias", "POST")
    def set_alias(uc, req):
        registry.set_alias(req.name, req.alias, req.version)
        return {}

    @route("DeleteRegisteredModelAliasRequest", f"{base}/registered-models/alias", "DELETE")
    def delete_alias(uc, req):
        registry.delete_alias(req.name, req.alias)
        return {}

    @route("GetModelVersionByAliasRequest", f"{base}/registered-models/alias", "GET")
    def get_by_alias(uc, req):
        version = registry.get_version_by_alias(req.name, req.alias)
        return _render(uc.GetModelVersionByAliasResponse(model_version=_model_version(uc, version)))

    # -- model versions ---------------------------------------------------------------------

    @route("CreateModelVersionRequest", f"{base}/model-versions/create", "POST")
    def create_model_version(uc, req):
        version = registry.create_model_version(
            req.name,
            req.source,
            run_id=req.run_id,
            description=req.description,
            tags={t.key: t.value for t in req.tags},
            model_id=req.model_id,
            run_tracking_server_id=req.run_tracking_server_id,
        )
        return _render(uc.CreateModelVersionResponse(model_version=_model_version(uc, version)))

    @route("FinalizeModelVersionRequest", f"{base}/model-versions/finalize", "POST")
    def finalize(uc, req):
        version = registry.finalize_model_version(req.name, req.version)
        return _render(uc.FinalizeModelVersionResponse(model_version=_model_version(uc, version)))

    @route("GetModelVersionRequest", f"{base}/model-versions/get", "GET")
    def get_model_version(uc, req):
        version = registry.get_model_version(req.name, req.version)
        return _render(uc.GetModelVersionResponse(model_version=_model_version(uc, version)))

    @route("UpdateModelVersionRequest", f"{base}/model-versions/update", "PATCH")
    def update_model_version(uc, req):
        version = registry.update_model_version(
            req.name, req.version, req.description if req.HasField("description") else None
        )
        return _render(uc.UpdateModelVersionResponse(model_version=_model_version(uc, version)))

    @route("DeleteModelVersionRequest", f"{base}/model-versions/delete", "DELETE")
    def delete_model_version(uc, req):
        registry.delete_model_version(req.name, req.version)
        return {}

    @route("SearchModelVersionsRequest", f"{base}/model-versions/search", "GET")
    def search_model_versions(uc, req):
        versions, token = registry.search_model_versions(
            req.filter or None, req.max_results if req.HasField("max_results") else None, req.page_token
        )
        answer = uc.SearchModelVersionsResponse(
            model_versions=[_model_version(uc, v, full=False) for v in versions], next_page_token=token or ""
        )
        return _render(answer)

    @route("SetModelVersionTagRequest", f"{base}/model-versions/set-tag", "POST")
    def set_model_version_tag(uc, req):
        registry.set_model_version_tag(req.name, req.version, req.key, req.value)
        return {}

    @route("DeleteModelVersionTagRequest", f"{base}/model-versions/delete-tag", "DELETE")
    def delete_model_version_tag(uc, req):
        registry.delete_model_version_tag(req.name, req.version, req.key)
        return {}

    @route(
        "GenerateTemporaryModelVersionCredentialsRequest",
        f"{base}/model-versions/generate-temporary-credentials",
        "POST",
    )
    def temporary_credentials(uc, req):
        if req.operation == uc.MODEL_VERSION_OPERATION_UNSPECIFIED:
            raise invalid(
                "Missing required field: operation (MODEL_VERSION_OPERATION_READ or "
                "MODEL_VERSION_OPERATION_READ_WRITE)."
            )
        write = req.operation == uc.MODEL_VERSION_OPERATION_READ_WRITE
        expires = registry.temporary_credentials(req.name, req.version, write)
        credentials = uc.TemporaryCredentials(expiration_time=expires, storage_mode=uc.DEFAULT_STORAGE)
        return _render(uc.GenerateTemporaryModelVersionCredentialsResponse(credentials=credentials))

    @route("GetModelVersionDownloadUriRequest", f"{base}/model-versions/get-download-uri", "GET")
    def download_uri(uc, req):
        uri = registry.download_uri(req.name, req.version)
        return _render(uc.GetModelVersionDownloadUriResponse(artifact_uri=uri))

    @route(
        "IsDatabricksSdkModelsArtifactRepositoryEnabledRequest",
        f"{base}/registered-models:is-databricks-sdk-models-artifact-repository-enabled",
        "GET",
    )
    def sdk_repository_enabled(uc, req):
        # False: the client moves files through presigned URLs (DEFAULT_STORAGE), not the SDK.
        return _render(
            uc.IsDatabricksSdkModelsArtifactRepositoryEnabledResponse(
                is_databricks_sdk_models_artifact_repository_enabled=False
            )
        )

    @route("EmitModelVersionLineageRequest", f"{base}/model-versions/emit-lineage", "POST")
    def emit_lineage(uc, req):
        registry.get_model_version(req.name, req.version)  # lineage is not kept; the version must exist
        return {}

    # -- presigned URLs (Files API) ---------------------------------------------------------

    def presigned(path: str, op: str) -> str:
        return f"{ctx.base_url}{PRESIGNED_PATH}?{urlencode(urls.sign(path, op))}"

    @route("CreateUploadUrlRequest", "/api/2.0/fs/create-upload-url", "POST")
    def create_upload_url(uc, req):
        _, fs = protos()
        registry.check_files_path(_files_path(req.path), write=True)
        return _render(fs.CreateUploadUrlResponse(url=presigned(req.path, "write")))

    @route("CreateDownloadUrlRequest", "/api/2.0/fs/create-download-url", "POST")
    def create_download_url(uc, req):
        _, fs = protos()
        registry.check_files_path(_files_path(req.path), write=False)
        return _render(fs.CreateDownloadUrlResponse(url=presigned(req.path, "read")))

    def query(request: Request, name: str) -> str:
        values = request.query.get(name) or [""]
        return values[0]

    @raw_body
    def put_file(request: Request) -> Response:
        path = urls.verify(query(request, "t"), query(request, "sig"), "write")
        target = registry.check_files_path(path, write=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".uploading")
        partial.write_bytes(request.raw_body)
        partial.replace(target)
        return Response(b"", content_type="application/octet-stream", status=201)

    def get_file(request: Request) -> Response:
        path = urls.verify(query(request, "t"), query(request, "sig"), "read")
        target = registry.check_files_path(path, write=False)
        if not target.is_file():
            raise ApiError(404, "NOT_FOUND", f"File {path} does not exist.")
        return Response(target.read_bytes(), content_type="application/octet-stream")

    router.add("PUT", "", PRESIGNED_PATH, put_file)
    router.add("GET", "", PRESIGNED_PATH, get_file)

    # -- stages: refused for Unity Catalog models --------------------------------------------

    def transition_stage(request: Request) -> Any:
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
        mv = registry._call(
            "transition_model_version_stage",
            name,
            request.require("version", str),
            request.require("stage", str),
            request.get("archive_existing_versions", bool, False),
        )
        return {"model_version": _render(mv.to_proto())}

    router.add("POST", "2.0", "mlflow/model-versions/transition-stage", transition_stage)


def _files_path(path: str) -> str:
    if not path or not path.startswith("/"):
        raise invalid(
            f"Invalid path {path!r}: give an absolute Files-API path such as /Models/... or /Volumes/..."
        )
    return path
