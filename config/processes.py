"""What each process needs of the settings, checked when it starts (``load_settings``).

``Settings`` itself only refuses values that are wrong wherever they are read (a malformed payload key,
a short secret, an out-of-range number). Whether a value is *needed* depends on the process: the codec
server never signs a token, the migration Job never talks to Temporal. So each entry point names its
``Process`` and builds its settings with :func:`load_settings`, which refuses, outside env local/test,
every setting that process uses but lacks (or has only as its local default), naming each variable.
In env local and test (``make run``, the test suite) the local defaults are what is meant, and only
the checks marked for every env apply.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from enum import StrEnum

from config.settings import DEFAULT_JWT_SECRET, Settings

#: Apple team and key ids of the local development defaults (``Settings``): placeholders, never Apple's.
LOCAL_APPLE_IDS = {
    field: str(Settings.model_fields[field].default) for field in ("apple_team_id", "apple_key_id")
}
#: The FCM project of the local emulator (``Settings.fcm_project_id``'s default).
LOCAL_FCM_PROJECT = str(Settings.model_fields["fcm_project_id"].default)


class Process(StrEnum):
    """The processes that build settings; each entry point's ``PROCESS``."""

    #: ``python -m api.serve`` (and the ``api.main:app`` factory): tokens, MySQL, MongoDB, Kafka and its
    #: relay keys, Temporal, and Sign in with Apple for its own sign-in worker (``SOSOHAPPY_API_SIGN_IN_WORKER``).
    API = "api"
    #: ``python -m workers.main``: MySQL, MongoDB, Temporal, Sign in with Apple, FCM.
    WORKER = "worker"
    #: ``python -m storage.migrate`` (the migration Job) and ``python -m dm.migrate_messages``: MySQL, MongoDB.
    MIGRATE = "migrate"
    #: ``python -m temporal.codec_server``: the payload keys and its bearer token.
    CODEC_SERVER = "codec-server"
    #: ``python -m temporal.housekeeping`` / ``python -m temporal.nudges`` (schedule CLIs): Temporal.
    SCHEDULES = "schedules"


class SettingsRefused(SystemExit):
    """A process cannot start with these settings; the message names every variable at fault.

    A ``SystemExit`` (as the codec server's missing token always was): uncaught at start-up, the process
    exits with status 1 printing just the message, and no ``except Exception`` on the way swallows it."""


def _jwt_secret(s: Settings) -> str | None:
    if s.jwt_secret == DEFAULT_JWT_SECRET:
        return "SOSOHAPPY_JWT_SECRET is not set (the default secret is public)"
    return None


def _mysql(s: Settings) -> str | None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    if not s.database_url:
        return "SOSOHAPPY_DATABASE_URL is not set (the SQLite file in the data folder is for local use only)"
    try:
        backend = make_url(s.database_url).get_backend_name()
    except (ArgumentError, ValueError):
        return "SOSOHAPPY_DATABASE_URL is not a database URL"
    if backend != "mysql":
        return f"SOSOHAPPY_DATABASE_URL must be a MySQL URL (mysql+pymysql://...), not {backend}"
    return None


def _explicit(field: str, what: str) -> Callable[[Settings], str | None]:
    """The setting must be given (env or argument): its default is a loopback address for ``make run``."""

    def check(s: Settings) -> str | None:
        if field not in s.model_fields_set or not str(getattr(s, field)).strip():
            default = Settings.model_fields[field].default
            return f"SOSOHAPPY_{field.upper()} is not set ({what}; the default {default} is the local one)"
        return None

    return check


def _keyring(field: str, what: str) -> Callable[[Settings], str | None]:
    """The AES keyring setting ``field`` must be given: ``what`` it encrypts are unreadable without it."""

    def check(s: Settings) -> str | None:
        if getattr(s, field) is None:
            return (
                f"SOSOHAPPY_{field.upper()} is not set ({what} are encrypted; a key is generated only in "
                "env local or test)"
            )
        return None  # its format is Settings' own check

    return check


_payload_keys = _keyring("temporal_payload_keys", "Temporal payloads")
_relay_keys = _keyring("relay_keys", "the DM records relayed between replicas")


def _codec_token(s: Settings) -> str | None:
    if s.codec_server_token is None:
        return "SOSOHAPPY_CODEC_SERVER_TOKEN is not set (no codec server runs open; make run generates one)"
    return None


def _apple(s: Settings) -> list[str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    problems = []
    if not s.apple_private_key:
        problems.append("SOSOHAPPY_APPLE_PRIVATE_KEY is not set (Sign in with Apple's .p8 key)")
    else:
        try:
            # Decoded as activities.apple.AppleClient decodes it.
            key = serialization.load_der_private_key(base64.b64decode(s.apple_private_key), password=None)
        except (binascii.Error, ValueError, TypeError):
            key = None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
            problems.append(
                "SOSOHAPPY_APPLE_PRIVATE_KEY is not a P-256 key as base64 PKCS#8 DER (the .p8 body, one line)"
            )
    for field, placeholder in LOCAL_APPLE_IDS.items():
        value = str(getattr(s, field)).strip()
        if not value or value == placeholder:
            problems.append(
                f"SOSOHAPPY_{field.upper()} is not set (the default {placeholder} is a placeholder)"
            )
    return problems


def _fcm(s: Settings) -> list[str]:
    problems = []
    path = s.fcm_credentials_file
    if path is None:
        problems.append(
            "SOSOHAPPY_FCM_CREDENTIALS_FILE is not set (without a service account, pushes would go to FCM "
            "with the emulator's offline credential)"
        )
    elif not path.is_file():
        problems.append(f"SOSOHAPPY_FCM_CREDENTIALS_FILE names no file ({path})")
    else:
        try:
            account = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            account = None
            problems.append(f"SOSOHAPPY_FCM_CREDENTIALS_FILE {path} is unreadable ({type(exc).__name__})")
        else:
            if (
                not isinstance(account, dict)
                or account.get("type") != "service_account"
                or not account.get("private_key")
                or not account.get("client_email")
            ):
                problems.append(
                    f"SOSOHAPPY_FCM_CREDENTIALS_FILE {path} is not a service-account JSON key "
                    '("type": "service_account" with "private_key" and "client_email")'
                )
    if not s.fcm_project_id.strip() or s.fcm_project_id == LOCAL_FCM_PROJECT:
        problems.append(
            f"SOSOHAPPY_FCM_PROJECT_ID is not set (the default {LOCAL_FCM_PROJECT} is the emulator's project)"
        )
    return problems


Check = Callable[[Settings], str | list[str] | None]

_MONGO = _explicit("mongo_url", "the message store")
_KAFKA = _explicit("kafka_bootstrap", "the broker of the replicas' broadcasts")
_TEMPORAL = _explicit("temporal_address", "the Temporal frontend")


def _api_apple(s: Settings) -> list[str]:
    """The API's own sign-in worker runs the Apple exchange (``workers.registry.sign_in_activities``)."""
    return _apple(s) if s.api_sign_in_worker else []


#: Per process, what it checks outside env local/test.
NEEDS: dict[Process, tuple[Check, ...]] = {
    Process.API: (_jwt_secret, _mysql, _MONGO, _KAFKA, _relay_keys, _TEMPORAL, _payload_keys, _api_apple),
    Process.WORKER: (_mysql, _MONGO, _TEMPORAL, _payload_keys, _apple, _fcm),
    Process.MIGRATE: (_mysql, _MONGO),
    Process.CODEC_SERVER: (_payload_keys,),
    Process.SCHEDULES: (_TEMPORAL, _payload_keys),
}
#: Per process, what it checks in every env (local and test included).
ALWAYS: dict[Process, tuple[Check, ...]] = {
    Process.CODEC_SERVER: (_codec_token,),  # fail closed: no open codec server, in any env
}


def problems(settings: Settings, process: Process) -> list[str]:
    """Why ``process`` cannot start with ``settings`` (empty: it can)."""
    checks = ALWAYS.get(process, ()) + (() if settings.is_local else NEEDS[process])
    found: list[str] = []
    for check in checks:
        result = check(settings)
        if isinstance(result, str):
            found.append(result)
        elif result:
            found.extend(result)
    return found


def check_settings(settings: Settings, process: Process) -> Settings:
    """``settings`` when ``process`` can start with them; ``SettingsRefused`` naming every problem."""
    found = problems(settings, process)
    if found:
        raise SettingsRefused(
            f"the {process} process cannot start in env {settings.env!r}:\n"
            + "\n".join(f"  - {p}" for p in found)
        )
    return settings


def load_settings(process: Process) -> Settings:
    """The settings of ``process`` from the environment, refused at once (naming the variables) when
    they are malformed or lack what the process needs: the first thing each entry point does."""
    return check_settings(Settings(), process)
