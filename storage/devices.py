"""Device registrations: the FCM tokens a user's devices gave at sign-in, one row per token.

A registration belongs to the login that registered it (``session_id``), and a device is addressed only
while that login is live (``login_is_live``: its row exists, is the same user's, is not revoked and has
not expired). The client never signs out (CLIENT_CONTRACT §3: logout is local), so a login usually ends
by expiring, or by being revoked for refresh-token reuse; its devices stop getting pushes at that moment,
whatever is left of the row (housekeeping deletes it). A row without a login (``session_id`` NULL) is
never addressed: every sign-in has registered its token with its login since the table exists, so such
a row can only be written by hand, and a token that belongs to no login must not show anyone's notices.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import ColumnElement, Connection, delete, exists, select
from sqlalchemy.orm import Session

from storage.models import DeviceRegistration, LoginSession

#: What the iOS client sends when it has no FCM token yet; never deliverable.
PLACEHOLDER_TOKENS = frozenset({"", "unknownFcmToken", "null", "nil", "(null)"})


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def is_deliverable(token: str | None) -> bool:
    """False for missing or placeholder tokens."""
    return token is not None and token.strip() not in PLACEHOLDER_TOKENS and len(token) <= 512


def login_is_live(now: datetime) -> ColumnElement[bool]:
    """SQL on a ``device_registrations`` row: the login that registered it is live at ``now`` (its
    ``login_sessions`` row exists, belongs to the same user, is not revoked and has not expired). False
    for a row without a login. Correlated on the login's primary key. Every listing a push is sent from
    filters by it (``ids_for``, ``tokens_for``, ``token_of``, the nudges' ``storage.nudges``), and
    housekeeping deletes the rows it is false for."""
    return exists().where(
        LoginSession.id == DeviceRegistration.session_id,
        LoginSession.user_id == DeviceRegistration.user_id,
        LoginSession.revoked_at.is_(None),
        LoginSession.expires_at > now,
    )


def register_device(session: Session, user_id: int, token: str | None, session_id: str) -> bool:
    """Store ``token`` for ``user_id`` and its login ``session_id`` (moving it from any previous owner
    or login); False for placeholders."""
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


def tokens_for(session: Session, user_id: int, now: datetime | None = None) -> list[str]:
    """The tokens of ``user_id``'s devices whose login is live, oldest registration first (push runs
    from before devices were addressed by id)."""
    stmt = (
        select(DeviceRegistration.token)
        .where(DeviceRegistration.user_id == user_id, login_is_live(now or _now()))
        .order_by(DeviceRegistration.id)
    )
    return list(session.scalars(stmt))


def ids_for(session: Session | Connection, user_id: int, now: datetime | None = None) -> list[int]:
    """The registration ids of ``user_id``'s devices whose login is live, oldest first (what push
    workflows address: likes, DMs, nudges)."""
    stmt = (
        select(DeviceRegistration.id)
        .where(DeviceRegistration.user_id == user_id, login_is_live(now or _now()))
        .order_by(DeviceRegistration.id)
    )
    return list(session.scalars(stmt))


def token_of(
    session: Session | Connection, device_id: int, user_id: int, now: datetime | None = None
) -> str | None:
    """The token of registration ``device_id`` while it belongs to ``user_id`` (a token moves with its
    row when another account signs in on the device) and its login is live, else ``None``: a send
    retried after the login ended finds the device gone."""
    stmt = select(DeviceRegistration.token).where(
        DeviceRegistration.id == device_id,
        DeviceRegistration.user_id == user_id,
        login_is_live(now or _now()),
    )
    return session.scalars(stmt).one_or_none()


def remove_device(session: Session, device_id: int) -> int:
    """Forget registration ``device_id`` (FCM said its token is dead); returns how many rows went."""
    return session.execute(delete(DeviceRegistration).where(DeviceRegistration.id == device_id)).rowcount  # type: ignore[attr-defined]


def remove_token(session: Session, token: str) -> int:
    """Forget ``token`` (FCM said it is dead); returns how many rows went."""
    return session.execute(delete(DeviceRegistration).where(DeviceRegistration.token == token)).rowcount  # type: ignore[attr-defined]


def remove_session_devices(session: Session, session_id: str) -> int:
    """Forget the tokens registered by one login (``storage.logins.revoke_session``: sign-out, reuse)."""
    stmt = delete(DeviceRegistration).where(DeviceRegistration.session_id == session_id)
    return session.execute(stmt).rowcount  # type: ignore[attr-defined]


def remove_user_devices(session: Session, user_id: int) -> int:
    """Forget every token of ``user_id`` (resign)."""
    return session.execute(delete(DeviceRegistration).where(DeviceRegistration.user_id == user_id)).rowcount  # type: ignore[attr-defined]
