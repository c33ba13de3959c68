"""Sign-in requests: what the client sent to ``/auth-service/signIn``, kept in a short-lived row so
``SignInWorkflow`` carries only the row's random id (no e-mail, device token or Apple code in its history).

A row lives for one sign-in: the Apple exchange swaps the authorization code for the refresh token,
opening the login clears the device token and the refresh token (each now lives in its own table), and
the API deletes the row when the workflow has answered. Rows a crash left behind are purged once expired
(at the next request, by primary key: see ``_purge_expired``). So the database holds nothing here it does not hold anyway in ``users`` and
``device_registrations``, except, for the seconds of the exchange, an Apple code that is single-use and
expires within minutes at Apple.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from storage.logins import utcnow
from storage.models import SignInRequest

#: Well above a sign-in's longest run (the Apple exchange gives up within a minute).
REQUEST_TTL = timedelta(minutes=15)


def create(
    session: Session,
    *,
    email: str,
    provider: str,
    provider_id: str,
    device_token: str,
    apple_authorization_code: str | None,
) -> str:
    """Store one validated sign-in under a new random id (expired rows are purged first)."""
    now = utcnow()
    _purge_expired(session, now)
    request_id = secrets.token_hex(16)
    session.add(
        SignInRequest(
            id=request_id,
            email=email,
            provider=provider,
            provider_id=provider_id,
            device_token=device_token or None,
            apple_authorization_code=apple_authorization_code or None,
            expires_at=now + REQUEST_TTL,
        )
    )
    return request_id


#: Expired rows one request purges at most (only a crash leaves any behind).
PURGE_BATCH = 100


def _purge_expired(session: Session, now: datetime) -> None:
    """Delete expired rows by primary key, found by a non-locking read of the ``expires_at`` index.

    A ``DELETE … WHERE expires_at < now`` would lock the index entries it scans, including the first one
    past the range, then their rows: the reverse of the order in which ``remove`` (by id) locks a row and
    then its index entry, so concurrent sign-ins deadlocked (InnoDB, REPEATABLE READ). By key, every
    statement here locks a row before its index entries, and never a live row (a row's ``expires_at``
    never moves, so one found expired stays expired)."""
    expired = list(
        session.scalars(select(SignInRequest.id).where(SignInRequest.expires_at < now).limit(PURGE_BATCH))
    )
    if expired:  # by id alone: with ``expires_at`` in the WHERE, MariaDB walks that index again
        session.execute(delete(SignInRequest).where(SignInRequest.id.in_(expired)))


def get(session: Session, request_id: str, *, lock: bool = False) -> SignInRequest | None:
    """The request ``request_id`` (``None`` once deleted or purged)."""
    return session.get(SignInRequest, request_id, with_for_update=lock)


def remove(session: Session, request_id: str) -> None:
    """Forget the request (the workflow has answered); a no-op when it is gone already."""
    session.execute(delete(SignInRequest).where(SignInRequest.id == request_id))
