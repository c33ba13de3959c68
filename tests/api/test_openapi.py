"""The API's own description: ``/openapi.json`` is valid OpenAPI 3.1 generated from the routes' models,
someone can sign in by following it alone (as from ``/docs``), and ``/asyncapi.json`` describes the DM
socket with the frame models the socket applies."""

from __future__ import annotations

import json
import uuid
import warnings
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate
from pydantic import TypeAdapter

from api.errors import ErrorBody
from api.main import create_app
from config import Settings
from dm.frames import ErrorFrame, SendFrame, error_frame, parse_frame
from dm.messages import MessageDto
from tests.fixtures.ios_client import code_challenge, code_verifier

#: Routes that are not the client's: no token, and not all of them answer JSON errors.
PUBLIC = {"/", "/healthz", "/readyz", "/asyncapi.json"}


@pytest.fixture(scope="module")
def spec(api_url: str) -> dict[str, Any]:
    return httpx.get(f"{api_url}/openapi.json", timeout=30).json()


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, item in spec["paths"].items() for method, op in item.items()]


def test_the_served_spec_is_valid_openapi_3_1_with_unique_operation_ids(spec: dict[str, Any]) -> None:
    validate(spec)  # raises on any violation of the OpenAPI 3.1 schema
    assert spec["openapi"].startswith("3.1")
    ids = [op["operationId"] for _, _, op in _operations(spec)]
    assert len(ids) == len(set(ids)), ids
    assert {"getAuthorizeCode", "signIn", "reIssueToken", "saveFeed", "findOtherFeed"} <= set(ids)


def test_building_the_spec_warns_of_nothing() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # FastAPI's duplicate operation id warning included
        create_app(Settings(env="test")).openapi()


def test_every_client_operation_declares_its_inputs_security_200_body_and_error_body(
    spec: dict[str, Any],
) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert schemes["accessToken"] == {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": schemes["accessToken"]["description"],
    }
    assert (schemes["email"]["in"], schemes["email"]["name"]) == ("header", "Email")
    for path, method, op in _operations(spec):
        if path in PUBLIC:
            continue
        where = f"{method.upper()} {path}"
        assert "422" not in op["responses"], where  # validation errors are 400 ErrorBody
        for status in ("400", "403"):
            content = op["responses"][status]["content"]["application/json"]["schema"]
            assert content == {"$ref": "#/components/schemas/ErrorBody"}, where
        assert "200" in op["responses"], where
        if op["operationId"] in {"getAuthorizeCode", "signIn", "image"}:
            assert op.get("security", []) == [], where
        elif op["operationId"].startswith("reIssueToken"):
            assert op["security"] == [{"refreshToken": [], "email": []}], where
        else:
            assert op["security"] == [{"accessToken": [], "email": []}], where
    assert spec["components"]["schemas"]["ErrorBody"]["required"] == list(ErrorBody.model_fields)


def test_inputs_carry_their_types_bounds_and_enums(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    save = spec["paths"]["/feed-service/saveFeed"]["post"]["requestBody"]["content"]
    assert list(save) == ["multipart/form-data"]
    form = schemas["SaveFeedForm"]["properties"]
    assert (form["happiness"]["minimum"], form["happiness"]["maximum"]) == (1, 5)
    assert form["date"]["minimum"] == 2000000000000000 and form["date"]["exclusiveMaximum"] == 10**16
    assert form["weather"]["enum"] == ["cloudy", "partlyCloudy", "rainy", "snowy", "sunny"]
    assert form["text"]["maxLength"] == 3000 and form["isPublic"]["type"] == "boolean"
    assert set(schemas["SaveFeedForm"]["required"]) == {
        "categoryList",
        "isPublic",
        "date",
        "weather",
        "happiness",
        "nickname",
    }
    assert schemas["SignInForm"]["properties"]["provider"]["enum"] == ["apple", "google", "kakao"]
    other = {p["name"]: p for p in spec["paths"]["/feed-service/findOtherFeed"]["get"]["parameters"]}
    assert other["size"]["in"] == "query" and other["size"]["schema"]["maximum"] == 35
    detail = spec["paths"]["/feed-service/findDetailFeed"]["post"]
    assert {p["name"] for p in detail["parameters"]} == {"date", "dstNickname", "srcNickname"}
    status = spec["paths"]["/feed-service/updatePublicStatus"]["post"]["requestBody"]["content"]
    assert list(status) == ["application/json"]  # what the client sends there
    page = schemas["FeedPage"]
    assert set(page["required"]) == {"content", "numberOfElements", "pageNumber", "pageSize", "isLast"}


def _operation(spec: dict[str, Any], operation_id: str) -> tuple[str, str, dict[str, Any]]:
    return next(o for o in _operations(spec) if o[2]["operationId"] == operation_id)


def _form_fields(spec: dict[str, Any], op: dict[str, Any]) -> tuple[str, list[str]]:
    (media_type, content), *_ = op["requestBody"]["content"].items()
    ref = content["schema"]["$ref"].rsplit("/", 1)[-1]
    return media_type, list(spec["components"]["schemas"][ref]["properties"])


def test_a_person_can_sign_in_and_call_following_only_the_spec(spec: dict[str, Any], api_url: str) -> None:
    """What /docs offers: getAuthorizeCode, signIn, then Authorize with the response headers."""
    http = httpx.Client(base_url=api_url, timeout=30)
    verifier = code_verifier()
    path, method, op = _operation(spec, "getAuthorizeCode")
    media_type, fields = _form_fields(spec, op)
    assert (media_type, fields) == ("multipart/form-data", ["codeChallenge"])
    resp = http.request(method, path, files={"codeChallenge": (None, code_challenge(verifier))})
    assert resp.status_code == 200, resp.text
    body_schema = op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    (code_field,) = spec["components"]["schemas"][body_schema]["required"]
    code = resp.json()[code_field]

    path, method, op = _operation(spec, "signIn")
    media_type, fields = _form_fields(spec, op)
    values = {
        "email": f"docs-{uuid.uuid4().hex[:10]}@gmail.com",
        "provider": "kakao",
        "providerId": "2718281828",
        "codeVerifier": verifier,
        "authorizeCode": code,
        "authorizationCode": "",
        "deviceToken": "docs-device",
    }
    assert set(fields) == set(values)
    resp = http.request(method, path, files={k: (None, v) for k, v in values.items()})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"nickname": ""}
    declared_headers = op["responses"]["200"]["headers"]
    assert set(declared_headers) == {"Authorization", "authorization-refresh", "email"}

    # Authorize: each scheme the next operation requires is filled from the header signIn answered.
    answered = {"accessToken": resp.headers["Authorization"], "email": resp.headers["email"]}
    path, method, op = _operation(spec, "checkDuplicateNickname")
    schemes = spec["components"]["securitySchemes"]
    (requirement,) = op["security"]
    headers = {schemes[name]["name"]: answered[name] for name in requirement}
    (param,) = op["parameters"]
    assert (param["name"], param["in"]) == ("nickname", "query")
    resp = http.request(method, path, params={"nickname": "nobody"}, headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"email": None, "isPresent": False}
    assert http.request(method, path, params={"nickname": "nobody"}).status_code == 403


def test_the_spec_links_the_asyncapi_document_of_the_dm_socket(spec: dict[str, Any], api_url: str) -> None:
    assert spec["externalDocs"]["url"] == "/asyncapi.json"
    assert "/asyncapi.json" in spec["info"]["description"]
    doc = httpx.get(f"{api_url}/asyncapi.json", timeout=30).json()
    assert doc["asyncapi"] == "3.0.0"
    assert doc["channels"]["directMessages"]["address"] == "/dm-service/connect-dm"
    schemas = doc["components"]["schemas"]
    assert schemas["SendFrame"] == SendFrame.model_json_schema(ref_template="#/components/schemas/{model}")
    assert schemas["MessageDto"] == MessageDto.model_json_schema(mode="serialization")
    assert schemas["ErrorFrame"] == ErrorFrame.model_json_schema(mode="serialization")
    for operation in doc["operations"].values():
        (message,) = operation["messages"]
        name = message["$ref"].rsplit("/", 1)[-1]
        assert name in doc["channels"]["directMessages"]["messages"]


def test_the_frame_models_describe_what_the_socket_takes_and_answers() -> None:
    frame = SendFrame(sender="alice", receiver="bob", date=2024012017042712, text="hi")
    assert parse_frame(frame.model_dump_json(), "alice") == ("bob", 2024012017042712, "hi")
    refused = json.loads(error_frame("text must be a non-empty string", '{"text": ""}'))
    assert TypeAdapter(ErrorFrame).validate_python(refused).error == "text must be a non-empty string"
