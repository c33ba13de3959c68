"""How the API describes itself: ``/openapi.json`` (OpenAPI 3.1, from the routes' own models) with
``/docs``, and ``/asyncapi.json`` (AsyncAPI 3.0) for the DM WebSocket, built from the frame models of
``dm.frames`` and ``dm.messages``, which FastAPI leaves out of OpenAPI."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from pydantic.json_schema import models_json_schema

from dm.frames import ErrorFrame, SendFrame
from dm.messages import MessageDto

ASYNCAPI_PATH = "/asyncapi.json"
DM_SOCKET_PATH = "/dm-service/connect-dm"

DESCRIPTION = f"""
Wire-compatible with the SoSoHappy iOS client. Most endpoints take `multipart/form-data`, a few a query
string, `updatePublicStatus` JSON; every one also accepts its fields as a query string, url-encoded or
JSON. Errors are `ErrorBody` JSON (400 for bad input, 403 for a bad token: the client's re-issue trigger).

**Signing in from this page:** run *getAuthorizeCode* with the SHA-512 hex of a verifier you pick, then
*signIn* with the code, the verifier and an e-mail; copy its `Authorization` response header
(`Bearer eyJ…`) and its `email` header into **Authorize** (`accessToken`, `email`). Every other call
then carries them. When the access token expires, *reIssueToken* takes the `authorization-refresh`
header (`refreshToken`).

**Direct messages** go over the WebSocket `{DM_SOCKET_PATH}`, described in AsyncAPI 3.0 at
[{ASYNCAPI_PATH}]({ASYNCAPI_PATH}).
"""


def operation_id(route: APIRoute) -> str:
    """The endpoint's name as the client's plist keys name it: the path's last segment
    (``/auth-service/signIn`` → ``signIn``); routes on several methods name each one explicitly."""
    segments = [s for s in route.path_format.split("/") if s and not s.startswith("{")]
    return segments[-1] if segments else route.name


def install_docs(app: FastAPI, *, serve: bool = True) -> None:
    """Make ``app.openapi()`` say what the middleware and error handlers do and, with ``serve``, serve
    ``/asyncapi.json`` beside ``/openapi.json`` (``create_app`` serves both only in local and test)."""
    if serve:
        router = APIRouter(tags=["docs"])

        @router.get(ASYNCAPI_PATH, operation_id="asyncapi", summary="AsyncAPI 3.0 of the DM WebSocket")
        def asyncapi() -> dict[str, Any]:
            """The AsyncAPI document of ``/dm-service/connect-dm``."""
            return asyncapi_document(app.version)

        app.include_router(router)
    app.description = DESCRIPTION
    plain_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _as_served(plain_openapi())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _as_served(spec: dict[str, Any]) -> dict[str, Any]:
    """Validation errors are answered 400 with ``ErrorBody`` (``api.errors``), never FastAPI's 422; a
    request needs every security scheme its operation names (token *and* e-mail), not any one of them."""
    for path in spec.get("paths", {}).values():
        for operation in path.values():
            operation.get("responses", {}).pop("422", None)
            security = operation.get("security")
            if security:
                merged: dict[str, list[str]] = {}
                for requirement in security:
                    merged.update(requirement)
                operation["security"] = [merged] if merged else []
    schemas = spec.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    _integral_bounds(spec)
    spec["externalDocs"] = {"description": "AsyncAPI 3.0 of the DM WebSocket", "url": ASYNCAPI_PATH}
    return spec


def _integral_bounds(node: Any) -> None:
    """FastAPI's schema objects hold numeric bounds as floats: write whole ones as JSON integers."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _BOUNDS and isinstance(value, float) and value.is_integer():
                node[key] = int(value)
            else:
                _integral_bounds(value)
    elif isinstance(node, list):
        for item in node:
            _integral_bounds(item)


_BOUNDS = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"}


def asyncapi_document(version: str) -> dict[str, Any]:
    """AsyncAPI 3.0 of the DM socket: the handshake (same headers as REST) and its three frames."""
    _, defs = models_json_schema(
        [(SendFrame, "validation"), (MessageDto, "serialization"), (ErrorFrame, "serialization")],
        ref_template="#/components/schemas/{model}",
    )
    schemas = defs.get("$defs", {})

    def message(name: str, model: str, summary: str) -> dict[str, Any]:
        return {
            "name": name,
            "title": model,
            "summary": summary,
            "contentType": "application/json",
            "payload": {
                "schemaFormat": "application/schema+json;version=draft-2020-12",
                "schema": {"$ref": f"#/components/schemas/{model}"},
            },
        }

    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "SoSoHappy direct messages",
            "version": version,
            "description": (
                "One WebSocket per signed-in user. The upgrade carries the same `Authorization` and "
                "`Email` headers as REST (a refused handshake is HTTP 403 before the upgrade); frames are "
                "JSON text. A refused frame is answered with an error frame and the socket stays open; "
                "the socket closes with 4401 when its login is revoked and 4403 when its token expires. "
                "History: `POST /dm-service/findDirectMessage` and `/findMultipleDirectMessage` "
                "(OpenAPI at `/openapi.json`)."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "api": {
                "host": "127.0.0.1:8888",
                "protocol": "ws",
                "description": "the API itself (any replica); `wss` behind the ingress",
                "security": [
                    {"$ref": "#/components/securitySchemes/accessToken"},
                    {"$ref": "#/components/securitySchemes/email"},
                ],
            }
        },
        "channels": {
            "directMessages": {
                "address": DM_SOCKET_PATH,
                "title": "the caller's direct messages",
                "messages": {
                    "send": {"$ref": "#/components/messages/send"},
                    "message": {"$ref": "#/components/messages/message"},
                    "error": {"$ref": "#/components/messages/error"},
                },
                "bindings": {
                    "ws": {
                        "method": "GET",
                        "query": {
                            "type": "object",
                            "properties": {
                                "nickname": {
                                    "type": "string",
                                    "description": "optional; when given, the caller's own nickname",
                                }
                            },
                        },
                        "headers": {
                            "type": "object",
                            "required": ["Authorization", "Email"],
                            "properties": {
                                "Authorization": {"type": "string", "description": "`Bearer <access jwt>`"},
                                "Email": {"type": "string", "description": "`<email>+<provider>`"},
                            },
                        },
                    }
                },
            }
        },
        "operations": {
            "sendMessage": {
                "action": "receive",
                "channel": {"$ref": "#/channels/directMessages"},
                "summary": "the server receives a message to deliver (stored, then relayed or pushed)",
                "messages": [{"$ref": "#/channels/directMessages/messages/send"}],
            },
            "deliverMessage": {
                "action": "send",
                "channel": {"$ref": "#/channels/directMessages"},
                "summary": "the server delivers a stored message to its receiver's open sockets",
                "messages": [{"$ref": "#/channels/directMessages/messages/message"}],
            },
            "refuseFrame": {
                "action": "send",
                "channel": {"$ref": "#/channels/directMessages"},
                "summary": "the server refuses a frame it cannot send (the socket stays open)",
                "messages": [{"$ref": "#/channels/directMessages/messages/error"}],
            },
        },
        "components": {
            "schemas": schemas,
            "messages": {
                "send": message("send", "SendFrame", "a message from the caller"),
                "message": message("message", "MessageDto", "a message to the caller, as stored"),
                "error": message("error", "ErrorFrame", "why the caller's frame was refused"),
            },
            "securitySchemes": {
                "accessToken": {"type": "httpApiKey", "name": "Authorization", "in": "header"},
                "email": {"type": "httpApiKey", "name": "Email", "in": "header"},
            },
        },
    }
