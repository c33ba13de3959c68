"""The local MongoDB-wire server is used without retryable writes; production's URL keeps MongoDB's
defaults (bench/HISTORY.md: SecantusDB's retryable-write bookkeeping slows every write as it grows)."""

from __future__ import annotations

from pymongo import MongoClient

from config import Settings
from devstack.processes import local_mongo_url


def test_the_local_url_turns_retryable_writes_off_and_the_default_url_does_not() -> None:
    local: MongoClient = MongoClient(local_mongo_url(27017), connect=False)
    default: MongoClient = MongoClient(Settings.model_fields["mongo_url"].default, connect=False)
    try:
        assert local.options.retry_writes is False
        assert default.options.retry_writes is True
    finally:
        local.close()
        default.close()


def test_the_test_servers_url_is_the_local_one(mongo_url: str) -> None:
    client: MongoClient = MongoClient(mongo_url)
    try:
        assert client.options.retry_writes is False
        client["local_url_check"]["docs"].insert_one({"ok": 1})  # and writes still work
        assert client["local_url_check"]["docs"].count_documents({}) == 1
    finally:
        client.drop_database("local_url_check")
        client.close()
