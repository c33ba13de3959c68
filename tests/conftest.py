"""Test configuration: every real server is started once per session by the fixture modules below."""

import os

from temporal.codec import generate_key_entry

# One generated payload key for the whole run, inherited by every Settings() of this process and by the
# processes the tests start (workers, APIs, migrations): they all must read each other's payloads.
os.environ.setdefault("SOSOHAPPY_TEMPORAL_PAYLOAD_KEYS", generate_key_entry("test-1"))
# Likewise one relay key: every API replica a test starts opens the DM records of the others.
os.environ.setdefault("SOSOHAPPY_RELAY_KEYS", generate_key_entry("relay-test-1"))

pytest_plugins = [
    "tests.fixtures.servers",
    "tests.fixtures.emulators",
    "tests.fixtures.app",
    "tests.fixtures.codec",
]
