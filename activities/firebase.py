"""The firebase-admin app of a worker process, pointed at real FCM or, by settings, at the local emulator."""

from __future__ import annotations

import threading
import warnings

import firebase_admin
import google.oauth2.credentials
from firebase_admin import credentials, messaging
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from config import Settings

_lock = threading.Lock()
# FCM registration tokens (what the iOS client sends) are addressed with `token`; `fid` is for
# Firebase installation ids, so the deprecation does not apply to this backend.
warnings.filterwarnings("ignore", "Message.token is deprecated", DeprecationWarning)
FCM_BASE_URL = "https://fcm.googleapis.com"
#: firebase-admin's HTTP timeouts for one send, in seconds: to connect, and to wait for FCM's answer.
CONNECT_TIMEOUT_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 20.0
#: Connection attempts a send makes at most (a dropped connection is reconnected once, never resent:
#: ``_leave_retries_to_temporal``).
CONNECT_ATTEMPTS = 2
#: How long one ``messaging.send`` call can take at most: a refresh of the access token first (a
#: service account's, about hourly; google-auth makes it with the same timeouts, one connection), then
#: every connect attempt timing out and the answer arriving at the read timeout. A send attempt's
#: ``start_to_close`` must be longer (``workflows.push``): an attempt Temporal times out while its POST
#: is still waiting for FCM would be sent again by the next attempt, and the device notified twice.
SEND_CALL_SECONDS = (CONNECT_TIMEOUT_SECONDS + READ_TIMEOUT_SECONDS) + (
    CONNECT_ATTEMPTS * CONNECT_TIMEOUT_SECONDS + READ_TIMEOUT_SECONDS
)


class OfflineCredential(credentials.Base):
    """A credential that never touches the network: a static bearer token accepted by the emulator."""

    def __init__(self, token: str = "local-emulator") -> None:
        self._g_credential = google.oauth2.credentials.Credentials(token=token)

    def get_credential(self) -> google.oauth2.credentials.Credentials:
        """The google-auth credential firebase-admin attaches to its requests."""
        return self._g_credential


def firebase_app(settings: Settings, name: str = "sosohappy") -> firebase_admin.App:
    """The initialised firebase-admin ``App`` called ``name`` (created once per process)."""
    with _lock:
        try:
            return firebase_admin.get_app(name)
        except ValueError:
            pass
        if settings.fcm_credentials_file is not None:
            cred: credentials.Base = credentials.Certificate(str(settings.fcm_credentials_file))
        else:
            cred = OfflineCredential()
        timeouts = (CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS)  # requests' (connect, read)
        app = firebase_admin.initialize_app(
            cred, {"projectId": settings.fcm_project_id, "httpTimeout": timeouts}, name=name
        )
        endpoint = (settings.fcm_endpoint or FCM_BASE_URL).rstrip("/")
        if settings.fcm_endpoint:
            _point_messaging_at(app, endpoint, settings.fcm_project_id)
        _leave_retries_to_temporal(app, endpoint)
        return app


def _point_messaging_at(app: firebase_admin.App, endpoint: str, project_id: str) -> None:
    # firebase-admin has no emulator setting for FCM; its messaging service keeps the send URL in one
    # attribute, so we replace only that and everything else (payload encoding, error mapping) stays real.
    service = messaging._get_messaging_service(app)
    service._fcm_url = f"{endpoint}/v1/projects/{project_id}/messages:send"


def _leave_retries_to_temporal(app: firebase_admin.App, endpoint: str) -> None:
    # By default firebase-admin retries 500/503 four times and sleeps for any Retry-After inside the
    # call (an hour-long Retry-After would block an activity thread for an hour). Push delivery retries
    # in Temporal instead, where every attempt and its back-off are visible in the history; only one
    # reconnect on a dropped connection stays here.
    retry = Retry(
        total=None,
        connect=CONNECT_ATTEMPTS - 1,
        read=0,
        status=0,
        other=0,
        respect_retry_after_header=False,
        raise_on_status=False,
        allowed_methods=None,
    )
    service = messaging._get_messaging_service(app)
    service._client.session.mount(
        endpoint, HTTPAdapter(pool_connections=100, pool_maxsize=100, max_retries=retry)
    )
