"""Device registrations: the FCM tokens a user's devices gave at sign-in, one row per token."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection, delete, select
from sqlalchemy.orm import Session

from storage.models import DeviceRegistration

#: What the iOS client sends when it has no FCM token yet; never deliverable.
PLACEHOLDER_TOKENS = frozenset({"", "unknownFcmToken", "null", "nil", "(null)"})


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def is_deliverable(token: str | None) -> bool:
    """False for missing or placeholder tokens."""
    return token is not None and token.strip() not in PLACEHOLDER_TOKENS and len(token) <= 512


def register_device(session: Session, user_id: int, token: str | None, session_id: str | None) -> bool:
    """Store ``token`` for ``user_id`` (moving it from any previous owner); False for placeholders."""
    if not is_deliverable(token):
        return False
    assert token is not None
    token = token.strip()
    row = session.scalars(select(DeviceRegistration).where(DeviceRegistration.token == token)).one_or_none()
    now = _now()
    if row is None:
        session.add(
            DeviceRegistration(
                user_id=user_id, session_id=session_id, token=token, created_at=now, updated_at=now
            )
        )
    else:
        row.user_id, row.session_id, row.updated_at = user_id, session_id, now
    session.flush()
    return True


def tokens_for(session: Session, user_id: int) -> list[str]:
    """Every deliverable token of ``user_id``, oldest registration first."""
    stmt = (
        select(DeviceRegistration.token)
        .where(DeviceRegistration.user_id == user_id)
        .order_by(DeviceRegistration.id)
    )
    return list(session.scalars(stmt))


def ids_for(session: Session | Connection, user_id: int) -> list[int]:
    """The registration ids of ``user_id``'s devices, oldest first (what push workflows address)."""
    stmt = (
        select(DeviceRegistration.id)
        .where(DeviceRegistration.user_id == user_id)
        .order_by(DeviceRegistration.id)
    )
    return list(session.scalars(stmt))


def token_of(session: Session | Connection, device_id: int, user_id: int) -> str | None:
    """The token of registration ``device_id`` while it belongs to ``user_id`` (a token moves with its
    row when another account signs in on the device), else ``None``."""
    stmt = select(DeviceRegistration.token).where(
        DeviceRegistration.id == device_id, DeviceRegistration.user_id == user_id
    )
    return session.scalars(stmt).one_or_none()


def remove_device(session: Session, device_id: int) -> int:
    """Forget registration ``device_id`` (FCM said its token is dead); returns how many rows went."""
    return session.execute(delete(DeviceRegistration).where(DeviceRegistration.id == device_id)).rowcount  # type: ignore[attr-defined]


def remove_token(session: Session, token: str) -> int:
    """Forget ``token`` (FCM said it is dead); returns how many rows went."""
    return session.execute(delete(DeviceRegistration).where(DeviceRegistration.token == token)).rowcount  # type: ignore[attr-defined]


def remove_session_devices(session: Session, session_id: str) -> int:
    """Forget the tokens registered by one login (sign-out)."""
    stmt = delete(DeviceRegistration).where(DeviceRegistration.session_id == session_id)
    return session.execute(stmt).rowcount  # type: ignore[attr-defined]


def remove_user_devices(session: Session, user_id: int) -> int:
    """Forget every token of ``user_id`` (resign)."""
    return session.execute(delete(DeviceRegistration).where(DeviceRegistration.user_id == user_id)).rowcount  # type: ignore[attr-defined]
