"""The one way every process connects to Temporal: pydantic data converter with the payload encryption
codec (temporal/codec.py), configured namespace."""

from __future__ import annotations

import dataclasses

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.runtime import Runtime

from config import Settings
from temporal.codec import encryption_codec


def data_converter(settings: Settings) -> DataConverter:
    """Pydantic payloads, encrypted with the keyring of ``settings`` (API, workers, tests, benchmarks,
    replays and the codec server all build theirs here)."""
    if not settings.temporal_payload_encryption:
        return pydantic_data_converter
    return dataclasses.replace(pydantic_data_converter, payload_codec=encryption_codec(settings))


async def connect(settings: Settings, *, runtime: Runtime | None = None) -> Client:
    """Connect to ``settings.temporal_address`` in ``settings.temporal_namespace``."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(settings),
        runtime=runtime,
    )
