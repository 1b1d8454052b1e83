"""SCIM identities of a workspace through databricks-sdk (w.users, w.groups, w.service_principals),
and the short-lived tokens the notebook runtime hands to runs (Identities.issue_token)."""

from __future__ import annotations

import uuid

import pytest
from databricks.sdk.errors import BadRequest, NotFound, ResourceConflict
from databricks.sdk.service import iam

from devstack.workspace.http import ApiError
from devstack.workspace.iam.backend import Identities
from devstack.workspace.store import Store


def test_pat_caller_is_the_admin_user_with_a_home_folder(ws_sdk):
    me = ws_sdk.current_user.me()

    assert me.user_name == "admin@devstack.local"
    assert "admins" in {g.display for g in me.groups}
    assert ws_sdk.workspace.get_status(f"/Users/{me.user_name}").object_type.value == "DIRECTORY"


def test_users_created_listed_filtered_and_deleted(ws_sdk):
    name = f"ana-{uuid.uuid4().hex[:6]}@example.com"
    user = ws_sdk.users.create(user_name=name, display_name="Ana")

    assert ws_sdk.workspace.get_status(f"/Users/{name}").object_type.value == "DIRECTORY"
    assert [u.id for u in ws_sdk.users.list(filter=f'userName eq "{name}"')] == [user.id]
    assert ws_sdk.users.get(user.id).emails[0].value == name
    with pytest.raises(ResourceConflict) as twice:
        ws_sdk.users.create(user_name=name)
    assert name in str(twice.value)

    ws_sdk.users.delete(user.id)
    with pytest.raises(NotFound) as gone:
        ws_sdk.users.get(user.id)
    assert user.id in str(gone.value)


def test_groups_hold_users_and_service_principals(ws_sdk):
    user = ws_sdk.users.create(user_name=f"bo-{uuid.uuid4().hex[:6]}@example.com")
    sp = ws_sdk.service_principals.create(display_name="group-member-sp")
    group = ws_sdk.groups.create(
        display_name=f"ml-engineers-{uuid.uuid4().hex[:6]}", members=[iam.ComplexValue(value=user.id)]
    )

    ws_sdk.groups.patch(
        group.id,
        operations=[iam.Patch(op=iam.PatchOp.ADD, path="members", value=[{"value": sp.id}])],
        schemas=[iam.PatchSchema.URN_IETF_PARAMS_SCIM_API_MESSAGES_2_0_PATCH_OP],
    )

    members = {m.value for m in ws_sdk.groups.get(group.id).members}
    assert members == {user.id, sp.id}
    assert group.display_name in {g.display for g in ws_sdk.service_principals.get(sp.id).groups}
    assert [g.id for g in ws_sdk.groups.list(filter=f"displayName eq {group.display_name}")] == [group.id]


def test_scim_pagination_and_bad_filters(ws_sdk):
    for i in range(3):
        ws_sdk.service_principals.create(display_name=f"page-{i}")
    raw = ws_sdk.api_client.do("GET", "/api/2.0/preview/scim/v2/ServicePrincipals", query={"count": 1})

    assert raw["itemsPerPage"] == 1 and raw["totalResults"] >= 3
    assert len(list(ws_sdk.service_principals.list(count=1))) == raw["totalResults"]
    with pytest.raises(BadRequest) as bad:
        next(ws_sdk.groups.list(filter="nonsense"))
    assert "Invalid filter" in str(bad.value)


def test_service_principal_application_id_must_be_an_entra_client_id(ws_sdk):
    with pytest.raises(BadRequest) as bad:
        ws_sdk.service_principals.create(application_id="not-a-uuid", display_name="x")
    assert "not-a-uuid" in str(bad.value) and "UUID" in str(bad.value)


def test_issue_token_names_its_principal_until_it_expires(tmp_path):
    store = Store(tmp_path / "workspace.db")
    identities = Identities(store, workspace_name="unit", pat="dapi-unit")
    sp = identities.by_application_id(
        identities.create_service_principal({"displayName": "run-sp"})["applicationId"]
    )

    token = identities.issue_token(sp, 60)
    expired = identities.issue_token(sp, -1)

    assert identities.authenticate({"authorization": f"Bearer {token}"}) == sp
    assert identities.authenticate({"authorization": "Bearer dapi-unit"}) == identities.admin
    with pytest.raises(ApiError) as refused:
        identities.authenticate({"authorization": f"Bearer {expired}"})
    assert (refused.value.status, refused.value.error_code) == (401, "UNAUTHENTICATED")
    assert "expired at" in refused.value.message
    store.close()
