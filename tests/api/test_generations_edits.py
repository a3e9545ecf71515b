from __future__ import annotations

from typing import Any

import httpx
import pytest

from core import keys
from tests.api.helpers import finished_checkpoint, subject_with_photos, train
from tests.conftest import auth
from tests.images import dog, image


def test_generation_on_the_base_model(client: httpx.Client, user: dict[str, str]) -> None:
    response = client.post(
        "/v1/generations", json={"prompt": "a sks dog on a beach", "num_images": 2}, headers=auth(user)
    )
    assert response.status_code == 202, response.text
    generation = response.json()
    assert generation["status"] == "queued" and generation["images"] == []
    assert generation["params"]["num_images"] == 2 and isinstance(generation["params"]["seed"], int)
    fetched = client.get(f"/v1/generations/{generation['id']}", headers=auth(user))
    assert fetched.json()["id"] == generation["id"]
    canceled = client.post(f"/v1/generations/{generation['id']}/cancel", headers=auth(user))
    assert canceled.status_code == 202 and canceled.json()["status"] == "canceled"


def test_generation_with_checkpoints(
    client: httpx.Client, user: dict[str, str], other_user: dict[str, str], runtime: Any
) -> None:
    subject = subject_with_photos(client, user)
    checkpoint_id = finished_checkpoint(runtime, train(client, user, [subject["id"]]).json()["id"])
    body = {"prompt": "a sks dog", "checkpoints": [{"id": checkpoint_id, "scale": 0.8}], "seed": 7}
    response = client.post("/v1/generations", json=body, headers=auth(user))
    assert response.status_code == 202
    assert response.json()["params"]["checkpoints"] == [{"id": checkpoint_id, "scale": 0.8}]
    assert client.post("/v1/generations", json=body, headers=auth(other_user)).status_code == 404
    generation_id = response.json()["id"]
    assert client.get(f"/v1/generations/{generation_id}", headers=auth(other_user)).status_code == 404


@pytest.mark.parametrize(
    "fields",
    [
        {"prompt": ""},
        {"num_images": 0},
        {"num_images": 5},
        {"width": 100},
        {"steps": 0},
        {"seed": -1},
        {"guidance_scale": 99},
        {"checkpoints": [{"id": "a"}, {"id": "a"}]},
        {"checkpoints": [{"id": "a", "scale": 9}]},
    ],
)
def test_invalid_generation_fields(client: httpx.Client, user: dict[str, str], fields: dict[str, Any]) -> None:
    response = client.post("/v1/generations", json={"prompt": "a dog", **fields}, headers=auth(user))
    assert response.status_code == 422, response.text


def test_generation_idempotency(client: httpx.Client, user: dict[str, str]) -> None:
    headers = {**auth(user), "Idempotency-Key": "gen-1"}
    first = client.post("/v1/generations", json={"prompt": "a dog"}, headers=headers).json()
    assert client.post("/v1/generations", json={"prompt": "a dog"}, headers=headers).json()["id"] == first["id"]
    assert client.post("/v1/generations", json={"prompt": "a cat"}, headers=headers).status_code == 409


def edit(client: httpx.Client, user: dict[str, str], data: bytes, **fields: str) -> httpx.Response:
    form = {"source_prompt": "a dog", "target_prompt": "a dog wearing a hat", **fields}
    return client.post("/v1/edits", data=form, files=[("file", ("in.jpg", data, "image/jpeg"))], headers=auth(user))


def test_edit_create_and_get(client: httpx.Client, user: dict[str, str], other_user: dict[str, str]) -> None:
    response = edit(client, user, dog(0), strength="0.6")
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["kind"] == "edit" and job["params"]["strength"] == 0.6 and job["status"] == "queued"
    assert client.get(f"/v1/edits/{job['id']}", headers=auth(user)).json()["id"] == job["id"]
    assert client.get(f"/v1/edits/{job['id']}", headers=auth(other_user)).status_code == 404


def test_edit_bad_inputs(client: httpx.Client, user: dict[str, str]) -> None:
    assert edit(client, user, b"not an image").status_code == 415
    assert edit(client, user, image("PNG", size=(100, 100))).status_code == 422
    assert edit(client, user, dog(0), strength="2").status_code == 422
    missing = client.post(
        "/v1/edits", data={"source_prompt": "a"}, files=[("file", ("a.jpg", dog(0)))], headers=auth(user)
    )
    assert missing.status_code == 422
    assert {e["field"] for e in missing.json()["errors"]} == {"target_prompt"}
    two = [("file", ("a.jpg", dog(0))), ("file", ("b.jpg", dog(1)))]
    assert (
        client.post(
            "/v1/edits", data={"source_prompt": "a", "target_prompt": "b"}, files=two, headers=auth(user)
        ).status_code
        == 413
    )
    assert client.post("/v1/edits", data={"source_prompt": "a"}).status_code == 401


def test_checkpoint_get_and_download(
    client: httpx.Client, user: dict[str, str], other_user: dict[str, str], runtime: Any
) -> None:
    subject = subject_with_photos(client, user)
    training = train(client, user, [subject["id"]]).json()
    checkpoint_id = finished_checkpoint(runtime, training["id"], b"spectral shifts")
    response = client.get(f"/v1/checkpoints/{checkpoint_id}", headers=auth(user))
    assert response.status_code == 200
    checkpoint = response.json()
    assert checkpoint["training_id"] == training["id"] and checkpoint["subject_ids"] == [subject["id"]]
    assert checkpoint["size_bytes"] == len(b"spectral shifts") and checkpoint["download_expires_at"]
    assert httpx.get(checkpoint["download_url"]).content == b"spectral shifts"
    assert client.get(f"/v1/trainings/{training['id']}", headers=auth(user)).json()["checkpoint_id"] == checkpoint_id
    file = client.get(f"/v1/checkpoints/{checkpoint_id}/file", headers=auth(user))
    assert file.status_code == 200 and file.content == b"spectral shifts"
    assert "attachment" in file.headers["content-disposition"]
    assert client.get(f"/v1/checkpoints/{checkpoint_id}", headers=auth(other_user)).status_code == 404
    assert client.get(f"/v1/checkpoints/{checkpoint_id}/file", headers=auth(other_user)).status_code == 404


def test_lora_download(client: httpx.Client, user: dict[str, str], runtime: Any,
                       monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from api.routes import checkpoints as checkpoint_routes

    subject = subject_with_photos(client, user)
    checkpoint_id = finished_checkpoint(runtime, train(client, user, [subject["id"]]).json()["id"])
    url = f"/v1/checkpoints/{checkpoint_id}/file?format=lora&rank=8"
    sent: list[list[object]] = []
    monkeypatch.setattr(checkpoint_routes, "send", lambda app, name, args, **kw: sent.append(args))
    for _ in range(3):  # no inference worker in this test: the export never lands
        pending = client.get(url, headers=auth(user))
        assert pending.status_code == 202 and pending.headers["retry-after"] == "5"
        assert pending.json() == {"status": "exporting", "retry_after": 5}
    assert sent == [[checkpoint_id, 8]]  # one export asked for, however often the file is asked for
    runtime.storage.put(keys.checkpoint_lora(user["id"], checkpoint_id, 8), b"lora r8")
    assert client.get(url, headers=auth(user)).content == b"lora r8"
    assert client.get(f"/v1/checkpoints/{checkpoint_id}/file?format=lora&rank=7", headers=auth(user)).status_code == 422
    assert client.get(f"/v1/checkpoints/{checkpoint_id}/file?format=ckpt", headers=auth(user)).status_code == 422


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"scheduler": "heun"}, "scheduler"),
        ({"output_format": "gif"}, "output_format"),
        ({"output_format": "jpeg", "quality": 0}, "quality"),
        ({"output_format": "webp", "quality": 101}, "quality"),
        ({"quality": 80}, "quality"),  # png, the default
        ({"output_format": "png", "quality": 80}, "quality"),
        ({"aspect_ratio": "16:9", "width": 512}, "aspect_ratio"),
        ({"aspect_ratio": "4:3", "height": 256}, "aspect_ratio"),
        ({"aspect_ratio": "2:1"}, "aspect_ratio"),
    ],
)
def test_invalid_generation_options_name_their_field(
    client: httpx.Client, user: dict[str, str], fields: dict[str, Any], field: str
) -> None:
    response = client.post("/v1/generations", json={"prompt": "a dog", **fields}, headers=auth(user))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in response.json()["errors"]] == [field]


def test_generation_options_are_the_job_params(client: httpx.Client, user: dict[str, str]) -> None:
    body = {"prompt": "a dog", "scheduler": "dpm++", "output_format": "webp", "aspect_ratio": "16:9"}
    params = client.post("/v1/generations", json=body, headers=auth(user)).json()["params"]
    assert params["scheduler"] == "dpm++" and params["output_format"] == "webp" and params["quality"] == 90
    assert params["aspect_ratio"] == "16:9" and params["width"] is None and params["height"] is None
    plain = client.post("/v1/generations", json={"prompt": "a dog"}, headers=auth(user)).json()["params"]
    assert (plain["scheduler"], plain["output_format"], plain["quality"], plain["aspect_ratio"]) == (
        None, "png", None, None)  # fmt: skip
    jpeg = {"prompt": "a dog", "output_format": "jpeg", "quality": 55}
    assert client.post("/v1/generations", json=jpeg, headers=auth(user)).json()["params"]["quality"] == 55


def test_generation_options_take_part_in_idempotency(client: httpx.Client, user: dict[str, str]) -> None:
    headers = {**auth(user), "Idempotency-Key": "gen-options"}
    body = {"prompt": "a dog", "scheduler": "euler_a", "output_format": "jpeg", "quality": 70}
    first = client.post("/v1/generations", json=body, headers=headers).json()
    again = client.post("/v1/generations", json=body, headers=headers)
    assert again.json()["id"] == first["id"] and again.headers["idempotent-replayed"] == "true"
    for changed in ({"scheduler": "ddim"}, {"quality": 71}, {"output_format": "webp"}, {"aspect_ratio": "1:1"}):
        assert client.post("/v1/generations", json={**body, **changed}, headers=headers).status_code == 409


def test_a_body_without_the_options_compares_as_before_them() -> None:
    """An Idempotency-Key sent before v1.1 still replays: defaults of the options are not in the compared body."""
    from api.schemas import GenerationCreate

    before = {"prompt": "a dog", "negative_prompt": None, "checkpoints": [], "num_images": 1, "seed": None,
              "steps": None, "guidance_scale": None, "width": None, "height": None, "webhook_url": None}  # fmt: skip
    assert GenerationCreate(prompt="a dog").request_payload() == before
    assert GenerationCreate(prompt="a dog", output_format="png").request_payload() == before
    assert GenerationCreate(prompt="a dog", scheduler="ddim").request_payload() == {**before, "scheduler": "ddim"}


def test_the_openapi_schema_documents_the_aspect_ratio_sizes(client: httpx.Client) -> None:
    properties = client.get("/openapi.json").json()["components"]["schemas"]["GenerationCreate"]["properties"]
    assert "`16:9` 88x48" in properties["aspect_ratio"]["description"]  # the bundled 64 px base
    assert "`4:3` 592x440" in properties["aspect_ratio"]["description"]  # a 512 px base
    assert set(properties["scheduler"]["anyOf"][0]["enum"]) == {"ddim", "dpm++", "euler_a"}
