"""Request parameters the way the original bound them: query string, form, multipart parts, or JSON.

The iOS client sends multipart for most POSTs, a query string for a few, JSON for one, and sometimes
``Content-Type: application/json`` with an empty body; every parse failure is a 400 with a reason.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.datastructures import UploadFile

from accounts.nicknames import InvalidNickname, normalize_nickname
from api.errors import BadRequest, PayloadTooLarge

TRUE = {"true", "on", "yes", "1"}
FALSE = {"false", "off", "no", "0"}
_INDEXED = re.compile(r"^(?P<name>[A-Za-z_]+)\[(?P<index>\d+)\]$")


class Params:
    """Typed access to the request's parameters; each getter raises ``BadRequest`` naming the field."""

    def __init__(self, values: dict[str, Any], files: dict[str, list[UploadFile]]) -> None:
        self._values = values
        self._files = files

    def raw(self, name: str) -> Any:
        """The value as sent (``None`` if absent)."""
        return self._values.get(name)

    def text(self, name: str, *, required: bool = True, max_length: int | None = None) -> str | None:
        """A string parameter; missing or empty -> 400 when ``required``."""
        value = self._values.get(name)
        if value is None or (isinstance(value, str) and value == "" and required):
            if required:
                raise BadRequest(f"{name} is required")
            return None
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise BadRequest(f"{name} must be a string")
        value = str(value)
        if max_length is not None and len(value) > max_length:
            raise BadRequest(f"{name} must be at most {max_length} characters")
        return value

    def required_text(self, name: str, *, max_length: int | None = None) -> str:
        """A non-empty string parameter."""
        value = self.text(name, required=True, max_length=max_length)
        assert value is not None
        return value

    def nickname(self, name: str) -> str:
        """A parameter that names a user, as its canonical key (``accounts.nicknames``: NFC, trimmed);
        400 naming ``name`` when it is missing or not a valid nickname, so it never matches anyone."""
        try:
            return normalize_nickname(self.required_text(name))
        except InvalidNickname as exc:
            raise BadRequest(exc.for_field(name)) from None

    def integer(
        self,
        name: str,
        *,
        required: bool = True,
        minimum: int | None = None,
        maximum: int | None = None,
        default: int | None = None,
    ) -> int | None:
        """A decimal integer parameter within ``[minimum, maximum]``."""
        value = self._values.get(name)
        if value is None or value == "":
            if required and default is None:
                raise BadRequest(f"{name} is required")
            return default
        if isinstance(value, bool):
            raise BadRequest(f"{name} must be an integer")
        try:
            number = int(value) if isinstance(value, int) else int(str(value).strip())
        except ValueError:
            raise BadRequest(f"{name} must be an integer, got {str(value)[:40]!r}") from None
        if minimum is not None and number < minimum:
            raise BadRequest(f"{name} must be at least {minimum}")
        if maximum is not None and number > maximum:
            raise BadRequest(f"{name} must be at most {maximum}")
        return number

    def required_integer(self, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
        """A mandatory integer parameter."""
        value = self.integer(name, required=True, minimum=minimum, maximum=maximum)
        assert value is not None
        return value

    def boolean(self, name: str, *, required: bool = True) -> bool | None:
        """``true/false`` (also on/off, yes/no, 1/0, any case), as Spring bound booleans."""
        value = self._values.get(name)
        if value is None or value == "":
            if required:
                raise BadRequest(f"{name} is required")
            return None
        if isinstance(value, bool):
            return value
        lowered = str(value).strip().lower()
        if lowered in TRUE:
            return True
        if lowered in FALSE:
            return False
        raise BadRequest(f"{name} must be true or false")

    def string_list(self, name: str, *, required: bool = True) -> list[str]:
        """A list sent as one comma-joined value, repeated values, or a JSON array; items trimmed."""
        value = self._values.get(name)
        if value is None:
            if required:
                raise BadRequest(f"{name} is required")
            return []
        items = value if isinstance(value, list) else str(value).split(",")
        return [str(item).strip() for item in items if str(item).strip()]

    def files(self, name: str) -> list[UploadFile]:
        """File parts named ``name`` or ``name[0]``, ``name[1]``, … in index order."""
        return list(self._files.get(name, []))


async def read_params(request: Request) -> Params:
    """Merge the query string with the body (multipart, url-encoded or JSON; empty bodies tolerated)."""
    limit = request.app.state.resources.settings.max_request_bytes
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit:
        raise PayloadTooLarge(f"request body over {limit} bytes")
    values: dict[str, Any] = dict(request.query_params)
    files: dict[str, list[UploadFile]] = {}
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        try:
            form = await request.form(max_files=50, max_fields=200)
        except Exception as exc:
            raise BadRequest(f"malformed form body: {exc}") from exc
        indexed: dict[str, list[tuple[int, UploadFile]]] = {}
        for key, item in form.multi_items():
            if isinstance(item, UploadFile):
                match = _INDEXED.match(key)
                base, index = (match["name"], int(match["index"])) if match else (key, 10_000 + len(indexed))
                indexed.setdefault(base, []).append((index, item))
            else:
                repeated = form.getlist(key)
                values[key] = repeated if len(repeated) > 1 else item
        files = {name: [f for _, f in sorted(parts, key=lambda p: p[0])] for name, parts in indexed.items()}
    elif content_type.startswith("application/json") or not content_type:
        body = await request.body()
        if body.strip():
            try:
                data = json.loads(body)
            except ValueError as exc:
                raise BadRequest(f"malformed JSON body: {exc}") from exc
            if not isinstance(data, dict):
                raise BadRequest("JSON body must be an object")
            values.update(data)
    return Params(values, files)


ParamsDep = Annotated[Params, Depends(read_params)]
