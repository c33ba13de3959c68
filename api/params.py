"""Request parameters the way the original bound them, declared as pydantic models FastAPI parses.

The iOS client sends multipart for most POSTs, a query string for a few, JSON for one, and sometimes
``Content-Type: application/json`` with an empty body. Each route declares its parameters as one model
(``Annotated[XForm, Form(...)]`` or ``Annotated[XQuery, Query()]``): FastAPI validates the request with it
and renders it in ``/openapi.json``. ``ClientRoute`` first merges the query string with the body
(multipart, url-encoded or a JSON object; empty values dropped, parts ``imageList[0]``… as one
``imageList``, text or file alike, so an image part sent without a file is refused, not ignored),
as Spring's ``@ModelAttribute`` did, so any of those encodings reaches the model. A field that fails is
a 400 naming it (``api.errors``): the field types below raise the same reasons the domain rules give.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine
from contextlib import aclosing
from contextvars import ContextVar
from typing import Annotated, Any, ClassVar

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError
from starlette.datastructures import FormData, QueryParams, UploadFile
from starlette.formparsers import MultiPartParser

from accounts.nicknames import MAX_NICKNAME_LENGTH, InvalidNickname, normalize_nickname
from api.errors import ApiError, BadRequest, PayloadTooLarge
from freetext import refused_character
from kst.dates import MAX_DATE, MIN_DATE, InvalidDate, check_date

_INDEXED = re.compile(r"^(?P<name>[A-Za-z_]+)\[(?P<index>[0-9]{1,6})\]$")
MAX_FILES, MAX_FIELDS = 50, 200
#: A body that is not multipart (a JSON object, a url-encoded form): the client sends one of a few
#: fields or none, so a larger one is refused before it is read, and never parsed whole into memory.
MAX_PLAIN_BODY = 64 * 1024

#: The wire's camelCase names for snake_case fields (``src_nickname`` is sent as ``srcNickname``).
WIRE = ConfigDict(alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True)

#: Pydantic error type whose message is ``"<field> <reason>"`` (``api.errors`` adds the field).
FIELD_REASON = "field_reason"
#: Pydantic error type whose message already names the field (e.g. an e-mail refusal).
REASON = "reason"


def refuse_field(reason: str) -> PydanticCustomError:
    """A validation error rendered as ``"<field> <reason>"``."""
    return PydanticCustomError(FIELD_REASON, "{reason}", {"reason": reason})


def refuse(message: str) -> PydanticCustomError:
    """A validation error rendered as ``message`` alone."""
    return PydanticCustomError(REASON, "{message}", {"message": message})


def _nickname(value: str) -> str:
    try:
        return normalize_nickname(value)
    except InvalidNickname as exc:
        raise refuse_field(exc.reason) from None


#: A whole number as a client writes one: decimal digits, maybe signed and padded (as Spring's
#: ``NumberUtils`` read them). Pydantic alone would also take ``3.0`` and ``1_000`` (and so a JSON
#: float, which past 2**53 rounds a 16-digit date to another value).
_WHOLE_NUMBER = re.compile(r"\s*[+-]?[0-9]+\s*")


def _whole_number(value: Any) -> Any:
    if isinstance(value, str) and not _WHOLE_NUMBER.fullmatch(value):
        raise refuse_field(f"must be an integer, got {value[:40]!r}")
    return value


#: An integer parameter: decimal digits only (``refuse_field`` otherwise).
Integer = Annotated[int, BeforeValidator(_whole_number)]


def _date(value: int | None) -> int | None:
    if value is None:
        return None
    try:
        return check_date(value)
    except InvalidDate as exc:
        raise refuse_field(str(exc)) from None


def _free_text(value: str | None) -> str | None:
    reason = refused_character(value) if value is not None else None
    if reason is not None:
        raise refuse_field(reason)
    return value


#: Text shown to other users as written (``freetext``): no control, direction-override or hidden-text
#: characters.
FreeText = Annotated[str, AfterValidator(_free_text)]

#: A parameter that names a user, read as its canonical key (``accounts.nicknames``: NFC, trimmed).
Nickname = Annotated[
    str,
    AfterValidator(_nickname),
    Field(
        description="a nickname (NFC, trimmed; no control, format or invisible characters)",
        json_schema_extra={"minLength": 1, "maxLength": MAX_NICKNAME_LENGTH},
    ),
]
#: The client's 16-digit KST timestamp ``yyyyMMddHHmmssSS`` of a real calendar moment.
KstDate = Annotated[
    Integer,
    AfterValidator(_date),
    Field(
        description="16-digit KST timestamp yyyyMMddHHmmssSS",
        json_schema_extra={
            "minimum": MIN_DATE,
            "exclusiveMaximum": MAX_DATE + 1,
            "examples": [2024012017042712],
        },
    ),
]
#: ``date`` of findOtherFeed: a KST timestamp, or absent / ``-1`` for every day.
OptionalKstDate = Annotated[
    Integer | None,
    BeforeValidator(lambda v: None if v in ("-1", -1) else v),
    AfterValidator(_date),
    Field(description="16-digit KST timestamp yyyyMMddHHmmssSS; absent or -1: every day"),
]


def _split_list(value: Any) -> Any:
    """One comma-joined value, repeated values or a JSON array: the items, trimmed, empties dropped."""
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(item, str) for item in items):
        return value
    return [part.strip() for item in items for part in item.split(",") if part.strip()]


#: A list the client sends as one comma-joined string (``coffee,friends``).
CommaList = Annotated[list[str], BeforeValidator(_split_list)]


# -- one set of parameters per request, whatever the encoding ---------------------------------------


def _json_items(data: dict[str, Any]) -> list[tuple[str, str]]:
    items: list[tuple[str, str]] = []
    for key, value in data.items():
        for item in value if isinstance(value, list) else [value]:
            if item is None:
                continue
            if isinstance(item, bool):
                items.append((key, "true" if item else "false"))
            elif isinstance(item, str | int | float):
                items.append((key, str(item)))
            else:
                items.append((key, json.dumps(item)))
    return items


async def _plain_body(request: Request) -> bytes:
    """The whole body of a request that is not multipart, ``PayloadTooLarge`` past ``MAX_PLAIN_BODY``
    (declared or as it arrives); kept on the request, so a later ``form()`` parses it from memory."""
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > MAX_PLAIN_BODY:
        raise PayloadTooLarge(f"request body over {MAX_PLAIN_BODY} bytes: only file uploads are larger")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_PLAIN_BODY:
            raise PayloadTooLarge(f"request body over {MAX_PLAIN_BODY} bytes: only file uploads are larger")
        chunks.append(chunk)
    request._body = b"".join(chunks)
    return request._body


def _json_object(body: bytes) -> dict[str, Any]:
    """``body`` parsed as a JSON object of at most ``MAX_FIELDS`` values, else ``BadRequest``."""
    try:
        data = json.loads(body)
    except RecursionError:  # nested deeper than the parser's stack: not a body any client sends
        raise BadRequest("malformed JSON body: nested too deeply") from None
    except ValueError as exc:
        raise BadRequest(f"malformed JSON body: {exc}") from exc
    if not isinstance(data, dict):
        raise BadRequest("JSON body must be an object")
    values = sum(len(value) if isinstance(value, list) else 1 for value in data.values())
    if values > MAX_FIELDS:
        raise BadRequest(f"JSON body has more than {MAX_FIELDS} values")
    return data


class _TextPartsParser(MultiPartParser):
    """Starlette's multipart parser, except that a text part whose bytes are not valid in the body's
    charset (UTF-8 unless declared) is a ``BadRequest`` naming it: Starlette would decode it as
    Latin-1 and the entry would store that mojibake."""

    def on_part_end(self) -> None:
        """Check a text part's bytes before Starlette decodes them."""
        part = self._current_part
        if part.file is None:
            try:
                part.data.decode(self._charset)
            except UnicodeDecodeError:
                raise BadRequest(f"{part.field_name} must be {self._charset} text") from None
        super().on_part_end()


async def _multipart(request: Request) -> FormData:
    async with aclosing(request.stream()) as stream:
        return await _TextPartsParser(
            request.headers, stream, max_files=MAX_FILES, max_fields=MAX_FIELDS
        ).parse()


async def merged_params(request: Request, limit: int) -> list[tuple[str, str | UploadFile]]:
    """The query string, then the body's fields (so the body wins); body parts named ``name[i]`` come
    as ``name`` in index order (text parts, then files). ``BadRequest`` for a body that does not parse, ``PayloadTooLarge``
    over ``limit`` bytes (multipart) or ``MAX_PLAIN_BODY`` (any other body)."""
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit:
        raise PayloadTooLarge(f"request body over {limit} bytes")
    items: list[tuple[str, str | UploadFile]] = list(request.query_params.multi_items())
    content_type = request.headers.get("content-type", "").lower()
    multipart = content_type.startswith("multipart/form-data")
    if multipart or content_type.startswith("application/x-www-form-urlencoded"):
        if not multipart:
            await _plain_body(request)
        try:
            if multipart:
                form = await _multipart(request)
            else:
                form = await request.form(max_files=MAX_FILES, max_fields=MAX_FIELDS)
        except ApiError:
            raise  # a body cut off on its way in (api.uploads) says so itself
        except Exception as exc:
            raise BadRequest(f"malformed form body: {exc}") from exc
        files: list[tuple[str, int, UploadFile]] = []
        indexed: list[tuple[str, int, str]] = []
        for key, item in form.multi_items():
            match = _INDEXED.match(key)
            if isinstance(item, UploadFile):
                name, index = (match["name"], int(match["index"])) if match else (key, 10_000 + len(files))
                files.append((name, index, item))
            elif match:  # a text part ``categoryList[0]`` is an item of ``categoryList`` too
                indexed.append((match["name"], int(match["index"]), item))
            else:
                items.append((key, item))
        items += [(name, value) for name, _, value in sorted(indexed, key=lambda f: f[1])]
        items += [(name, file) for name, _, file in sorted(files, key=lambda f: f[1])]
    elif content_type.startswith("application/json") or not content_type:
        body = await _plain_body(request)
        if body.strip():
            items += _json_items(_json_object(body))
    return items


#: The wire names the current request sent with an empty value (FastAPI drops those from a form).
_EMPTY_FIELDS: ContextVar[frozenset[str]] = ContextVar("empty_fields", default=frozenset())


class ClientForm(BaseModel):
    """A request model on the wire's names. An empty value reads as "not sent" (the default applies, or
    the field is required) except for the fields in ``keep_empty``, where it is a value of its own."""

    model_config = WIRE
    #: Wire names whose empty value is meant as empty (``introduction=""`` clears it).
    keep_empty: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _restore_empty(cls, data: Any) -> Any:
        if cls.keep_empty and isinstance(data, dict):
            for name in cls.keep_empty & _EMPTY_FIELDS.get():
                data.setdefault(name, "")
        return data


class ClientRoute(APIRoute):
    """A route whose declared query or form model sees the merged parameters (``merged_params``)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """FastAPI's handler, after the request's parameters are merged into its form or query."""
        handler = super().get_route_handler()
        # Guards that must answer before any parsing (the sign-in rate limit): run them first.
        guards = [d.dependency for d in self.dependencies if getattr(d.dependency, "before_body", False)]
        has_body = self.body_field is not None
        has_query = any(_declares_query(dep) for dep in [self.dependant, *self.dependant.dependencies])
        if not (has_body or has_query):
            return handler

        async def merged(request: Request) -> Response:
            for guard in guards:
                await guard(request)  # type: ignore[misc]
            raw = await _raw_params(request)
            _EMPTY_FIELDS.set(frozenset(key for key, value in raw if value == ""))
            items = [(key, value) for key, value in raw if value != ""]
            if has_body:
                request._form = FormData(items)
            else:
                request._query_params = QueryParams([(k, v) for k, v in items if isinstance(v, str)])
            return await handler(request)

        return merged


def _declares_query(dependant: Any) -> bool:
    return bool(dependant.query_params)


async def _raw_params(request: Request) -> list[tuple[str, str | UploadFile]]:
    return await merged_params(request, request.app.state.resources.settings.max_request_bytes)
