"""The firebase-admin app of a worker process, pointed at real FCM or, by settings, at the local emulator."""

from __future__ import annotations

import threading

import firebase_admin
import google.oauth2.credentials
from firebase_admin import credentials, messaging

from config import Settings

_lock = threading.Lock()


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
        app = firebase_admin.initialize_app(cred, {"projectId": settings.fcm_project_id}, name=name)
        if settings.fcm_endpoint:
            _point_messaging_at(app, settings.fcm_endpoint.rstrip("/"), settings.fcm_project_id)
        return app


def _point_messaging_at(app: firebase_admin.App, endpoint: str, project_id: str) -> None:
    # firebase-admin has no emulator setting for FCM; its messaging service keeps the send URL in one
    # attribute, so we replace only that and everything else (payload encoding, error mapping) stays real.
    service = messaging._get_messaging_service(app)
    service._fcm_url = f"{endpoint}/v1/projects/{project_id}/messages:send"
