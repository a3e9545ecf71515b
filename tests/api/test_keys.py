"""API keys: a user lists, creates, rotates and revokes their own; an admin anyone's; another user's are 404."""

from __future__ import annotations

import httpx

from tests.conftest import ADMIN_KEY, auth, make_user


def _keys(client: httpx.Client, headers: dict[str, str], user_id: str = "me") -> list[dict]:  # type: ignore[type-arg]
    response = client.get(f"/v1/users/{user_id}/keys", headers=headers)
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


def test_create_list_rotate_revoke_own_keys(client: httpx.Client) -> None:
    user = make_user(client)
    (first,) = _keys(client, auth(user))
    assert first["revoked_at"] is None and "api_key" not in first
    created = client.post("/v1/users/me/keys", headers=auth(user))
    assert created.status_code == 201
    second = created.json()
    second_headers = {"Authorization": f"Bearer {second['api_key']}"}
    assert client.get("/v1/me", headers=second_headers).status_code == 200
    rotated = client.post(f"/v1/users/me/keys/{second['id']}/rotate", headers=auth(user))
    assert rotated.status_code == 201
    assert client.get("/v1/me", headers=second_headers).status_code == 401  # the old one is revoked at once
    third = {"Authorization": f"Bearer {rotated.json()['api_key']}"}
    assert client.get("/v1/me", headers=third).status_code == 200
    assert client.post(f"/v1/users/me/keys/{second['id']}/rotate", headers=auth(user)).status_code == 404
    assert client.delete(f"/v1/users/{user['id']}/keys/{first['id']}", headers=third).status_code == 204
    assert client.get("/v1/me", headers=auth(user)).status_code == 401
    states = {key["id"]: key["revoked_at"] is None for key in _keys(client, third)}
    assert states == {first["id"]: False, second["id"]: False, rotated.json()["id"]: True}


def test_another_users_keys_are_not_found_and_an_admin_manages_anyones(client: httpx.Client) -> None:
    owner, other = make_user(client), make_user(client)
    (key,) = _keys(client, auth(owner))
    for method, path in (("GET", f"/v1/users/{owner['id']}/keys"), ("POST", f"/v1/users/{owner['id']}/keys"),
                         ("DELETE", f"/v1/users/{owner['id']}/keys/{key['id']}"),
                         ("POST", f"/v1/users/{owner['id']}/keys/{key['id']}/rotate"),
                         ("DELETE", f"/v1/users/me/keys/{key['id']}")):  # fmt: skip
        response = client.request(method, path, headers=auth(other))
        assert response.status_code == 404, (method, path, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
    assert client.get("/v1/me", headers=auth(owner)).status_code == 200  # untouched
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    assert [k["id"] for k in _keys(client, admin, owner["id"])] == [key["id"]]
    assert client.delete(f"/v1/users/{owner['id']}/keys/{key['id']}", headers=admin).status_code == 204
    assert client.get("/v1/me", headers=auth(owner)).status_code == 401


def test_bad_ids_are_not_found(client: httpx.Client, user: dict[str, str]) -> None:
    for path in ("/v1/users/me/keys/not-an-id", "/v1/users/me/keys/00000000-0000-0000-0000-000000000000"):
        assert client.delete(path, headers=auth(user)).status_code == 404
    assert client.get("/v1/users/nobody/keys", headers=auth(user)).status_code == 404
    assert client.get("/v1/users/me/keys").status_code == 401


def test_a_revoked_bootstrap_key_stays_revoked_across_restarts(runtime) -> None:  # type: ignore[no-untyped-def]
    from core.accounts import ensure_admin_key, hash_api_key
    from core.db import session_scope
    from models import ApiKey, utcnow

    key = "svd_bootstrap_" + "b" * 40
    with session_scope(runtime.sessions) as session:
        assert ensure_admin_key(session, key) is not None
    with session_scope(runtime.sessions) as session:
        row = session.query(ApiKey).filter(ApiKey.key_hash == hash_api_key(key)).one()
        row.revoked_at = utcnow()
    with session_scope(runtime.sessions) as session:  # the next start
        assert ensure_admin_key(session, key) is None
        assert session.query(ApiKey).filter(ApiKey.key_hash == hash_api_key(key)).one().revoked_at is not None


def test_own_keys_under_v1_me_keys_and_the_last_one_stays(client: httpx.Client) -> None:
    user = make_user(client)
    listed = client.get("/v1/me/keys", headers=auth(user))
    assert listed.status_code == 200
    (only,) = listed.json()["data"]
    last = client.delete(f"/v1/me/keys/{only['id']}", headers=auth(user))
    assert last.status_code == 409 and last.headers["content-type"].startswith("application/problem+json")
    assert client.get("/v1/me", headers=auth(user)).status_code == 200  # not locked out
    created = client.post("/v1/me/keys", headers=auth(user))
    assert created.status_code == 201 and created.json()["api_key"]
    assert client.delete(f"/v1/me/keys/{only['id']}", headers=auth(user)).status_code == 204  # no longer the last
    fresh = {"Authorization": f"Bearer {created.json()['api_key']}"}
    rotated = client.post(f"/v1/me/keys/{created.json()['id']}/rotate", headers=fresh)
    assert rotated.status_code == 201
    assert client.get("/v1/me", headers=fresh).status_code == 401
    other = make_user(client)
    assert client.delete(f"/v1/me/keys/{rotated.json()['id']}", headers=auth(other)).status_code == 404
    assert client.get("/v1/me/keys").status_code == 401
