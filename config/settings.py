"""The one settings class of the backend (env prefix ``SOSOHAPPY_``).

Every process (API, workers, dev stack, tests) builds one ``Settings`` at start-up and hands it down;
nothing reads the environment at import time. ``Settings`` refuses values that are wrong wherever they
are read (malformed, out of range, unsafe); what a process *needs* (a secret, a real address instead of
a local default) is checked by that process's entry point, ``config.processes.load_settings``.
"""

from __future__ import annotations

import base64
import binascii
from datetime import time
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The JWT secret used when none is configured; the API accepts it only when ``env`` is explicitly local
#: or test (``config.processes``).
DEFAULT_JWT_SECRET = "sosohappy-local-development-only-secret-never-use-in-production-0123456789abcdef"

#: AES-256-GCM keys are 32 bytes.
PAYLOAD_KEY_BYTES = 32
#: Every relayed record carries its key's id (api/relay_seal.py): ids stay short.
MAX_RELAY_KEY_ID_BYTES = 64


def is_key_id(text: str) -> bool:
    """Whether ``text`` is a key id as keyrings write them: letters, digits, ``-`` and ``_``."""
    return bool(text) and text.replace("-", "").replace("_", "").isalnum()


def parse_keyring(text: str, variable: str) -> list[tuple[str, bytes]]:
    """``id:base64key,...`` (the setting ``variable``) as (key id, 32-byte key) pairs, the current
    (encrypting) key first.

    Raises ``ValueError`` naming the variable and the entry that is malformed (never the key material).
    """
    keys: list[tuple[str, bytes]] = []
    for position, entry in enumerate(e.strip() for e in text.split(",")):
        key_id, sep, encoded = entry.partition(":")
        key_id = key_id.strip()
        if not sep or not is_key_id(key_id):
            raise ValueError(
                f"{variable} entry {position + 1} is not `id:base64key` (ids: letters, digits, - and _)"
            )
        try:
            key = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"{variable} key {key_id!r} is not base64") from None
        if len(key) != PAYLOAD_KEY_BYTES:
            raise ValueError(f"{variable} key {key_id!r} has {len(key)} bytes, not {PAYLOAD_KEY_BYTES}")
        if key_id in (k for k, _ in keys):
            raise ValueError(f"{variable} names key {key_id!r} twice")
        keys.append((key_id, key))
    return keys


def parse_payload_keys(text: str) -> list[tuple[str, bytes]]:
    """The keyring of ``SOSOHAPPY_TEMPORAL_PAYLOAD_KEYS`` (``parse_keyring``)."""
    return parse_keyring(text, "SOSOHAPPY_TEMPORAL_PAYLOAD_KEYS")


def parse_relay_keys(text: str) -> list[tuple[str, bytes]]:
    """The keyring of ``SOSOHAPPY_RELAY_KEYS`` (``parse_keyring``), ids of at most
    ``MAX_RELAY_KEY_ID_BYTES``: each sealed record carries its key's id."""
    keys = parse_keyring(text, "SOSOHAPPY_RELAY_KEYS")
    for key_id, _ in keys:
        if len(key_id.encode()) > MAX_RELAY_KEY_ID_BYTES:
            raise ValueError(
                f"SOSOHAPPY_RELAY_KEYS key id {key_id[:8]!r}... is over {MAX_RELAY_KEY_ID_BYTES} bytes"
            )
    return keys


class Settings(BaseSettings):
    """Configuration of every SoSoHappy process; each field maps to ``SOSOHAPPY_<FIELD>``."""

    #: Errors name the setting, never its value (a refused secret would otherwise reach the crash log).
    model_config = SettingsConfigDict(
        env_prefix="SOSOHAPPY_", env_file=None, extra="ignore", hide_input_in_errors=True
    )

    #: Fails closed: an unset ``SOSOHAPPY_ENV`` means production, where each process refuses to start
    #: without the secrets and addresses it uses (``config.processes``); the dev stack says ``local`` and
    #: the tests say ``test`` explicitly.
    env: Literal["local", "test", "staging", "production"] = "production"
    data_dir: Path = Path(".data")

    # Logging (config/logging.py): one JSON object per line on stderr, or text for people.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["json", "text"] = "json"

    # HTTP API
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8888, ge=1, le=65535)
    #: ``python -m api.serve`` serves this process's Prometheus metrics on this port of ``api_host``
    #: (``/metrics``), apart from the API's port that the ingress routes to; 0 disables it.
    api_metrics_port: int = Field(default=9466, ge=0, le=65535)
    #: Trust ``X-Forwarded-For``/``X-Forwarded-Proto`` from the peers in ``api_forwarded_allow_ips``
    #: (comma-separated IPs or CIDRs, ``*`` for any), e.g. the ingress in front of the API.
    api_proxy_headers: bool = True
    api_forwarded_allow_ips: str = "127.0.0.1"
    #: On SIGTERM, open requests and sockets get this long before the API process exits.
    api_graceful_shutdown_seconds: int = Field(default=20, ge=0)
    #: Each API process runs a small Temporal worker for the sign-in task queue, so sign-ins start
    #: eagerly in it (``api.sign_in_worker``); off, the worker pool runs every sign-in.
    api_sign_in_worker: bool = True
    #: A sign-in's workflow times out (server-side) after this long: the request answers 503 instead
    #: of waiting for a worker that is not there, and a worker coming back later runs nothing for a
    #: client that has given up. It covers the Apple exchange's retries (4 attempts of at most 10 s)
    #: and stays below the app's 60 s request timeout (URLSession's default).
    sign_in_timeout_seconds: int = Field(default=50, ge=5, le=300)

    # Relational store: SQLite file in data_dir unless a MySQL URL is given. Outside local/test the API,
    # the worker and the migration refuse to start without a MySQL URL (``config.processes``).
    database_url: str | None = None
    #: Connections each API process keeps open; the API's threadpool is capped at the same number, so a
    #: request thread never waits for (or churns through) a connection beyond the pool.
    database_pool_size: int = Field(default=16, ge=1, le=200)
    #: A request that finds every request thread busy waits this long for one, then is answered 503 with
    #: Retry-After before any of its work ran (``api.shedding``). Once started it may still wait up to
    #: 40 s on the database (``storage.db.REQUEST_WAITS``): at most 15 keeps the answer under the app's
    #: 60 s request timeout.
    request_thread_wait_seconds: float = Field(default=10.0, gt=0, le=15)
    #: ``python -m storage.migrate`` waits this long for the database to answer before giving up.
    database_wait_seconds: float = Field(default=60.0, ge=0)
    #: The pre-start step creates the monitoring user (storage/monitoring_user.py) through this URL of a
    #: user allowed to CREATE USER and GRANT; unset (or no password below): it leaves the user alone.
    #: Only the migration Job gets it (Secret sosohappy-monitoring), never the API or the worker.
    database_admin_url: str | None = None
    #: Name and password of the read-only monitoring user (mysqld_exporter, Grafana's MySQL datasource).
    monitoring_database_user: str = "sosohappy_monitor"
    monitoring_database_password: str | None = None

    # MongoDB (messages). Loopback defaults for ``make run``: outside local/test the processes that use
    # an address (``config.processes``) refuse to start unless it is given, here and for Kafka and Temporal.
    mongo_url: str = "mongodb://127.0.0.1:27017"
    mongo_database: str = "dm"

    # Kafka (token and DM broadcasts between API replicas)
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_token_topic: str = "sosohappy.token-revocations"
    kafka_dm_topic: str = "sosohappy.direct-messages"
    #: Partitions the DM topic is created with where no operator declares it (the local broker; production's
    #: KafkaTopic says the same). Records are keyed by receiver, so each receiver's frames keep their order;
    #: a fetch then reads only the partitions with news, which keeps the local broker's per-fetch work small
    #: (bench/HISTORY.md: its in-memory engine scans a partition's batches on every fetch that returns data).
    kafka_dm_partitions: int = Field(default=16, ge=1, le=64)
    #: At least 1 (0 would poll the broker in a loop), below the consumers' 5 s request timeout
    #: (``api.kafka.broadcast_consumer``), which a fetch waiting longer would run into.
    kafka_fetch_max_wait_ms: int = Field(default=20, ge=1, le=4000)
    #: Every record of the DM topic (the messages relayed between API replicas, with their text and
    #: nicknames, and the replicas' socket and presence announcements) is AES-256-GCM sealed
    #: (api/relay_seal.py) with the first of these keys (``id:base64 32-byte key,...``); all of them
    #: open. Apart from the Temporal payload keys: only the API holds these, and they rotate on the
    #: topic's retention (an hour), not on the histories'. Required outside local/test by the API; in
    #: local/test, unset means a key generated once into ``data_dir``.
    relay_keys: SecretStr | None = None
    #: A replica refreshes its DM presence rows this often; rows older than the window count as gone, so
    #: the heartbeat must be shorter than the window (checked below).
    dm_heartbeat_seconds: float = Field(default=5.0, ge=0.1)
    dm_presence_fresh_seconds: float = Field(default=15.0, gt=0)
    # DM socket limits (api/dm_limits.py). A frame is one JSON message; the longest text (2000
    # characters, 4 UTF-8 bytes at most each) fits with room to spare. uvicorn gets the same limit
    # (``ws_max_size``), so nothing larger is even buffered.
    dm_max_frame_bytes: int = Field(default=16 * 1024, ge=1024)
    #: Sockets one user may hold (per replica, and across replicas while the broker is up); a new one
    #: closes the oldest (close code 4409).
    dm_max_sockets_per_user: int = Field(default=5, ge=1)
    #: Sockets one user may open on a replica: a burst, then this many a minute; a handshake beyond
    #: them is closed at once (1013, "try again later") before anything is read or written for it.
    dm_connect_burst: int = Field(default=10, ge=1)
    dm_connects_per_minute: float = Field(default=30.0, gt=0)
    #: Frames a socket may send per second after a burst; excess frames get an error frame, and a socket
    #: with more than ``dm_frame_strikes`` refused frames (one forgiven per second) is closed (4429).
    dm_frame_rate_per_second: float = Field(default=20.0, gt=0)
    dm_frame_burst: int = Field(default=40, ge=1)
    dm_frame_strikes: int = Field(default=10, ge=1)
    #: A frame not handed to a receiver's connection within this long closes that socket (4408): a
    #: receiver that does not read holds up nobody else and no unbounded memory.
    dm_send_timeout_seconds: float = Field(default=10.0, gt=0)
    #: A client ``date`` further than this from the server clock is replaced by the server time.
    dm_date_tolerance_seconds: float = Field(default=300.0, ge=0)
    #: Authenticate from the JWT plus the Kafka-fed revocation view; off = ask the database every request.
    revocation_view_enabled: bool = True
    #: Each replica also reads the revocation records newer than the last it saw this often, so a
    #: revocation whose broadcast was lost (broker down, replica died) still reaches its view.
    revocation_reconcile_seconds: float = Field(default=5.0, gt=0)

    # Temporal
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_task_queue_prefix: str = "sosohappy"
    #: Each API process's outbox drainer looks for queued workflow starts (renames, resigns whose start
    #: failed in the request) at least this often; a failed start is retried with backoff up to the max.
    outbox_poll_seconds: float = Field(default=5.0, gt=0)
    outbox_retry_max_seconds: float = Field(default=60.0, gt=0)
    #: The worker process serves /metrics (Prometheus), /healthz and /readyz on this port; 0 disables it.
    worker_metrics_port: int = Field(default=9464, ge=0, le=65535)
    #: The Temporal SDK's own metrics (``temporal_*``) of the worker process; 0 disables them.
    worker_temporal_metrics_port: int = Field(default=9465, ge=0, le=65535)
    #: On SIGTERM a worker stops polling and gives running activities this long to finish before it
    #: cancels them (Temporal retries a cancelled attempt on another worker).
    worker_graceful_shutdown_seconds: float = Field(default=90.0, ge=0)
    #: Every payload crossing Temporal is AES-256-GCM encrypted (temporal/codec.py) with the first of
    #: these keys (``id:base64 32-byte key,...``); all of them decrypt, so a key rotates by putting a new
    #: one first and keeping the old ones until the histories they wrote have expired. Required outside
    #: local/test by every process that talks to Temporal and by the codec server; in local/test, unset
    #: means a key generated once into ``data_dir``.
    temporal_payload_keys: SecretStr | None = None
    #: Off only for the benchmarks' codec-on/off comparison; refused outside local/test.
    temporal_payload_encryption: bool = True

    # Codec server (temporal/codec_server.py): /encode and /decode for the Web UI and the temporal CLI.
    codec_server_host: str = "127.0.0.1"
    codec_server_port: int = Field(default=8234, ge=1, le=65535)
    #: Bearer token every /encode and /decode request must carry (``Authorization: Bearer <token>``,
    #: the CLI's ``--codec-auth``). Required by the codec server in every env.
    codec_server_token: SecretStr | None = None
    #: The only origin CORS lets call the codec server (the Temporal Web UI as the browser sees it).
    codec_server_ui_origin: str = "http://127.0.0.1:8233"
    #: The Web UI can send no bearer token of ours (only its own OIDC token), so with this on a /decode
    #: from the UI origin needs none when it arrives from a loopback peer: the same machine under
    #: ``make run``, or ``kubectl port-forward`` in the cluster. Every other request needs the token.
    codec_server_ui_without_token: bool = False

    # Tokens
    #: Signs the API's tokens; the API refuses the default outside local/test.
    jwt_secret: str = DEFAULT_JWT_SECRET
    access_token_ttl_seconds: int = Field(default=36_000, ge=1)
    refresh_token_ttl_seconds: int = Field(default=14 * 24 * 3600, ge=1)
    authorize_code_ttl_seconds: int = Field(default=600, ge=1)
    #: The refresh token just rotated is still answered (with the current pair, no new rotation) this
    #: long after its rotation: the iOS client re-issues once per parallel 403, all with one token.
    #: Later, or any older token, is reuse and revokes the login.
    refresh_reuse_grace_seconds: float = Field(default=60.0, ge=0)
    #: getAuthorizeCode and signIn each allow this many requests a minute per client IP and API
    #: process (0: no limit in the app; the ingress limits them too), after a burst of
    #: ``sign_in_rate_limit_burst``. Carrier NAT puts many phones behind one IP, so keep it generous.
    sign_in_rate_limit_per_minute: int = Field(default=30, ge=0)
    sign_in_rate_limit_burst: int = Field(default=10, ge=1)

    # FCM (firebase-admin). No credentials file = offline credential for the local emulator; outside
    # local/test the worker refuses to start without a service-account file and a project id of its own.
    fcm_project_id: str = "sosohappy-local"
    fcm_endpoint: str | None = Field(
        default=None, description="Base URL replacing https://fcm.googleapis.com (emulator)."
    )
    fcm_credentials_file: Path | None = None
    push_deadline_seconds: int = Field(default=24 * 3600, ge=1)
    # DMs of one room to an offline user are gathered this long into one push with their count.
    dm_push_window_seconds: float = Field(default=3.0, gt=0, le=60)

    # Nudges (temporal/nudges.py): the evening reminder and the monthly story, each on a Temporal Schedule.
    #: Off: the reminder's runs send nothing (the schedule stays; pausing it is the operator's other switch).
    nudge_reminder_enabled: bool = True
    #: KST time of the evening reminder to every user with a device who has not written the day's entry.
    nudge_reminder_time: time = time(21, 0)
    #: Off: the monthly story's runs send nothing.
    nudge_monthly_enabled: bool = True
    #: KST time, on the 1st of each month, of the story of the month before.
    nudge_monthly_time: time = time(9, 0)
    #: The story of a month is sent only during this many first days of the next (a later backfill or
    #: re-run sends nothing); keep it well inside the namespace's retention, which remembers push ids.
    nudge_monthly_window_days: int = Field(default=7, ge=1, le=31)
    #: No nudge is sent from the quiet start to the quiet end (KST; equal: no quiet hours). A reminder run
    #: that finds itself in them stops; a story run waits for their end; a nudge's push gives up at the
    #: next quiet start.
    nudge_quiet_start: time = time(23, 0)
    nudge_quiet_end: time = time(8, 0)
    #: Users one batch of a nudge run lists (by id) and starts pushes for.
    nudge_batch_size: int = Field(default=200, ge=1, le=1000)

    # Sign in with Apple. The team and key ids are local placeholders: outside local/test the worker (and
    # the API while it runs its sign-in worker) refuses to start without real ones and a parseable key.
    apple_base_url: str = "https://appleid.apple.com"
    apple_client_id: str = "com.sosohappy.SoSoHappy"
    apple_team_id: str = "LOCALTEAM1"
    apple_key_id: str = "LOCALKEY01"
    apple_private_key: str | None = Field(
        default=None, description="Base64 PKCS#8 DER of the ES256 key (.p8 body); generated in local dev."
    )
    apple_redirect_uri: str = "https://sosohappy.dev/auth-service/login/oauth2/code/apple"

    # Limits
    #: Two full-resolution PNGs (up to 25 MB each, ``feeds.entries``) plus the text fields.
    max_request_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    #: A request body over this many bytes (or of unknown length) is a large upload (api/uploads.py);
    #: Starlette spools file parts past 1 MiB to disk, so smaller bodies cost little either way.
    large_upload_bytes: int = Field(default=1024 * 1024, ge=0)
    #: Large uploads one API process takes in at once; one more is answered 429 with Retry-After before
    #: its body is read. Each holds a spooled file of up to max_request_bytes (the pod's /tmp), a
    #: threadpool thread and a transaction while it is written.
    max_large_uploads: int = Field(default=8, ge=1)
    #: Large uploads one user may have in flight in one API process: the app sends one saveFeed or
    #: setProfile at a time, so 2 leaves room for a retry next to a request the app gave up on, and one
    #: account can never take every slot.
    max_large_uploads_per_user: int = Field(default=2, ge=1)
    #: A large upload whose body sends nothing for this many seconds is answered 408 and its slot
    #: freed: a client trickling its body would hold the slot for good (iOS itself gives up on a
    #: request idle for 60 s).
    upload_idle_seconds: float = Field(default=60.0, gt=0)
    #: A large upload that has not kept this average rate (bytes per second since it was admitted) once
    #: ``upload_rate_grace_seconds`` have passed is answered 408 and its slot freed: without a floor, a
    #: body trickled in a few bytes at a time (under the idle limit) would hold its slot for good. 32 KiB/s
    #: (256 kbit/s) is below a weak 3G uplink; a 50 MB saveFeed at that rate takes 26 minutes. Bounds: a
    #: floor under 1 KiB/s is no floor, one over 1 MiB/s would cut off real phones.
    upload_min_bytes_per_second: int = Field(default=32 * 1024, ge=1024, le=1024 * 1024)
    #: Time a large upload gets before the rate floor applies (radio wake-up, TCP slow start).
    upload_rate_grace_seconds: float = Field(default=10.0, gt=0, le=300)
    #: Bytes of spool files (the pod's /tmp, a 2 GiB emptyDir that uploads spool to as well, up to
    #: max_large_uploads × max_request_bytes) one API process's image downloads hold at once: each copies
    #: the chunks it sends there (api/image_streams.py), so an entry deleted mid-download never cuts it
    #: short; one more is answered 503 with Retry-After before its body. At least one 25 MiB image.
    download_spool_bytes: int = Field(default=1024 * 1024 * 1024, ge=32 * 1024 * 1024)

    # Entries
    #: saveFeed refuses an entry dated more than this many days after today (KST): the app dates a new
    #: entry now and an edited one with its own date, and "total" listings are newest first, so an entry
    #: dated ahead would stay at the top of everyone's findOtherFeed. ``None`` (not settable from the
    #: environment): no limit, for the test suite, which isolates its public listings in years of their own.
    feed_future_days: int | None = Field(default=1, ge=0, le=3650)
    #: Bytes of images saveFeed stores for one user in any rolling 24 hours (``storage.image_budget``),
    #: replaced and deleted ones included; a save that would go over is answered 429 with Retry-After.
    #: The app uploads full-resolution PNGs (10-25 MB, 2 per entry, re-sent on every edit), so 1 GiB is
    #: about twenty full saves a day, beyond a day's diary with edits and a week of catching up, while
    #: one account can no longer fill the database (it took ~9,000 past days x 125 MB). At least one
    #: save of 5 images of 25 MiB; at most 64 GiB (beyond that it bounds nothing).
    image_bytes_per_user_per_day: int = Field(
        default=1024 * 1024 * 1024, ge=5 * 25 * 1024 * 1024, le=64 * 1024 * 1024 * 1024
    )

    # Feed listings (feeds/paging.py)
    #: Housekeeping deletes the feed listings' page marks (``feeds.paging``) recorded longer ago than
    #: this; a page whose predecessor's mark is gone is answered as an empty last page once it is more
    #: than ten pages past the nearest mark left, so keep it beyond a long scrolling session. An unchanged
    #: mark is renewed only every ``feeds.paging.MARK_REFRESH`` (10 min) of reading, hence the hour's floor.
    feed_page_mark_ttl_seconds: int = Field(default=24 * 3600, ge=3600)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("codec_server_token")
    @classmethod
    def _long_codec_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("SOSOHAPPY_CODEC_SERVER_TOKEN must be at least 32 characters")
        return value

    @model_validator(mode="after")
    def _refuse_unsafe_values(self) -> Settings:
        """Values wrong for every process. Whether a process has what it needs (a secret, an address
        other than the local default) is its own start-up check: ``config.processes``."""
        if len(self.jwt_secret.encode()) < 32:
            raise ValueError("SOSOHAPPY_JWT_SECRET must be at least 32 bytes")
        if self.temporal_payload_keys is not None:
            parse_payload_keys(self.temporal_payload_keys.get_secret_value())
        if self.relay_keys is not None:
            parse_relay_keys(self.relay_keys.get_secret_value())
        if not self.temporal_payload_encryption and not self.is_local:
            raise ValueError(f"SOSOHAPPY_TEMPORAL_PAYLOAD_ENCRYPTION cannot be off in env {self.env!r}")
        if self.dm_heartbeat_seconds >= self.dm_presence_fresh_seconds:
            raise ValueError(
                "SOSOHAPPY_DM_HEARTBEAT_SECONDS must be below SOSOHAPPY_DM_PRESENCE_FRESH_SECONDS "
                "(a replica's presence rows would go stale between its heartbeats)"
            )
        return self

    @property
    def sqlalchemy_url(self) -> str:
        """The relational database URL: ``database_url`` or the embedded SQLite file."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'sosohappy.db').resolve()}"

    @property
    def is_local(self) -> bool:
        """True in local development and tests, where emulators and default secrets are allowed."""
        return self.env in ("local", "test")
