"""The one way every process connects to Temporal: pydantic data converter with the payload encryption
codec (temporal/codec.py), configured namespace."""

from __future__ import annotations

import dataclasses

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes
from temporalio.runtime import Runtime

from config import Settings
from temporal.codec import encryption_codec


def data_converter(settings: Settings, *, accept_plain: bool = False) -> DataConverter:
    """Pydantic payloads, encrypted with the keyring of ``settings`` (API, workers, tests, benchmarks,
    replays and the codec server all build theirs here). Failures' messages and stack traces are moved
    into their encoded attributes, so the codec encrypts them too: an exception's text can quote what
    it failed on (a database error its statement's values, a duplicate key its e-mail or device token),
    and the history would otherwise keep it readable. The project's client, the Web UI and the CLI
    through the codec server read them back. A payload that is not encrypted is refused when decoded
    (``temporal.codec``); ``accept_plain`` is for replaying histories recorded decoded, never for a
    worker or a client."""
    if not settings.temporal_payload_encryption:
        return pydantic_data_converter
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=encryption_codec(settings, accept_plain=accept_plain),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


async def connect(settings: Settings, *, runtime: Runtime | None = None) -> Client:
    """Connect to ``settings.temporal_address`` in ``settings.temporal_namespace``."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(settings),
        runtime=runtime,
    )
