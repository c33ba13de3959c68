"""Test configuration: every real server is started once per session by the fixture modules below."""

pytest_plugins = [
    "tests.fixtures.servers",
    "tests.fixtures.emulators",
    "tests.fixtures.app",
]
