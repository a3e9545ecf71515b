from __future__ import annotations

import httpx

from tests.conftest import auth, make_user


def test_admin_creates_user_whose_key_works(client: httpx.Client, admin_headers: dict[str, str]) -> None:
    response = client.post("/v1/users", json={"name": "Ada", "role": "user"}, headers=admin_headers)
    assert response.status_code == 201
    body = response.json()
    assert body["api_key"].startswith("svd_") and body["webhook_secret"].startswith("whsec_")
    me = client.get("/v1/me", headers={"Authorization": f"Bearer {body['api_key']}"})
    assert me.status_code == 200
    assert me.json() == {"id": body["id"], "name": "Ada", "role": "user", "created_at": body["created_at"]}
    assert "api_key" not in me.json()


def test_list_users_paginates(client: httpx.Client, admin_headers: dict[str, str]) -> None:
    for _ in range(3):
        make_user(client)
    first = client.get("/v1/users?limit=2", headers=admin_headers).json()
    assert len(first["data"]) == 2 and first["next_cursor"]
    second = client.get(f"/v1/users?limit=2&cursor={first['next_cursor']}", headers=admin_headers).json()
    assert {u["id"] for u in first["data"]}.isdisjoint({u["id"] for u in second["data"]})


def test_user_on_admin_endpoints_is_forbidden(client: httpx.Client, user: dict[str, str]) -> None:
    assert client.post("/v1/users", json={"name": "x"}, headers=auth(user)).status_code == 403
    response = client.get("/v1/users", headers=auth(user))
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"


def test_missing_or_wrong_key_is_401(client: httpx.Client) -> None:
    assert client.get("/v1/me").status_code == 401
    response = client.get("/v1/me", headers={"Authorization": "Bearer svd_nope"})
    assert response.status_code == 401
    assert response.json()["status"] == 401 and response.headers["www-authenticate"] == "Bearer"
    assert client.get("/v1/me", headers={"Authorization": "Basic abc"}).status_code == 401


def test_invalid_user_fields_are_422(client: httpx.Client, admin_headers: dict[str, str]) -> None:
    response = client.post("/v1/users", json={"name": "", "role": "root"}, headers=admin_headers)
    assert response.status_code == 422
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {"name", "role"}
    assert client.post("/v1/users", json={"name": "a", "extra": 1}, headers=admin_headers).status_code == 422


def test_forged_cursors_are_422(client: httpx.Client, admin_headers: dict[str, str]) -> None:
    import base64
    import json

    for raw in (b"[1, 2, 3]", b'["2030-01-01T00:00:00", "x"]', b'"text"', b"\xff\xfe"):
        cursor = base64.urlsafe_b64encode(raw).decode()
        response = client.get(f"/v1/users?cursor={cursor}", headers=admin_headers)
        assert response.status_code == 422, (raw, response.text)
    valid = base64.urlsafe_b64encode(json.dumps(["2030-01-01T00:00:00+00:00", "x"]).encode()).decode()
    assert client.get(f"/v1/users?cursor={valid}", headers=admin_headers).status_code == 200
