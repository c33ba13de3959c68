"""Token verification: a token string verified once is remembered, and what a remembered token still
has checked on every use (expiry, kind), against the same token verified from scratch."""

from __future__ import annotations

import time
from types import SimpleNamespace

import jwt
import pytest

from accounts import tokens
from accounts.tokens import ACCESS, REFRESH, InvalidToken, TokenIssuer
from config import Settings

SECRET = "a-test-secret-" + "s" * 64


def _issuer(secret: str = SECRET) -> TokenIssuer:
    return TokenIssuer(Settings(env="test", jwt_secret=secret))


def _refusal(issuer: TokenIssuer, token: str, kind: str = ACCESS) -> str:
    with pytest.raises(InvalidToken) as refused:
        issuer.verify(token, kind)
    return str(refused.value)


def test_a_remembered_token_expires_at_its_exp(monkeypatch: pytest.MonkeyPatch) -> None:
    issuer = _issuer()
    token = issuer.issue(ACCESS, "a@b.c+kakao", 7, "sid-1", 0)
    expired = jwt.encode(
        {"sub": ACCESS, "exp": int(time.time()) - 1, "email": "a@b.c+kakao", "uid": 7, "sid": "s"},
        SECRET,
        algorithm="HS512",
    )
    claims = issuer.verify(token, ACCESS)
    assert issuer.verify(token, ACCESS) == claims  # remembered: the same claims again
    # One second before its exp it is still good; at its exp it is expired, with the message a fresh
    # issuer (PyJWT) gives for an expired token.
    monkeypatch.setattr(tokens, "time", SimpleNamespace(time=lambda: claims.expires_at - 1.0))
    assert issuer.verify(token, ACCESS).user_id == 7
    monkeypatch.setattr(tokens, "time", SimpleNamespace(time=lambda: float(claims.expires_at)))
    assert _refusal(issuer, token) == _refusal(_issuer(), expired) == "Signature has expired"


def test_a_remembered_token_is_still_only_its_own_kind() -> None:
    issuer = _issuer()
    access = issuer.issue(ACCESS, "a@b.c+kakao", 7, "sid-1", 0)
    refresh = issuer.issue(REFRESH, "a@b.c+kakao", 7, "sid-1", 3)
    assert issuer.verify(access, ACCESS).session_id == "sid-1"
    assert issuer.verify(refresh, REFRESH).generation == 3
    assert _refusal(issuer, access, REFRESH) == "a AccessToken is not a RefreshToken"
    assert _refusal(issuer, refresh, ACCESS) == "a RefreshToken is not a AccessToken"


def test_a_token_remembered_by_one_issuer_is_refused_by_another_secret() -> None:
    issuer = _issuer()
    token = issuer.issue(ACCESS, "a@b.c+kakao", 7, "sid-1", 0)
    issuer.verify(token, ACCESS)
    assert _refusal(_issuer("another-secret-" + "s" * 64), token) == "Signature verification failed"


def test_a_refused_token_is_refused_every_time() -> None:
    issuer = _issuer()
    forged = jwt.encode(
        {"sub": ACCESS, "exp": int(time.time()) + 60, "email": "a@b.c+kakao", "uid": 7, "sid": "s"},
        "not-the-secret-" + "s" * 64,
        algorithm="HS512",
    )
    assert _refusal(issuer, forged) == _refusal(issuer, forged) == "Signature verification failed"


def test_a_token_with_a_not_before_is_checked_in_full_on_every_use() -> None:
    issuer = _issuer()
    later = int(time.time()) + 3600
    claims = {"sub": ACCESS, "exp": later + 60, "email": "a@b.c+kakao", "uid": 7, "sid": "s", "nbf": later}
    token = jwt.encode(claims, SECRET, algorithm="HS512")
    for _ in range(2):
        assert _refusal(issuer, token) == "The token is not yet valid (nbf)"


def test_the_remembered_tokens_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens, "VERIFIED_TOKENS_KEPT", 3)
    issuer = _issuer()
    issued = [issuer.issue(ACCESS, "a@b.c+kakao", user, f"sid-{user}", 0) for user in range(10)]
    for user, token in enumerate(issued):
        assert issuer.verify(token, ACCESS).user_id == user
        assert len(issuer._verified) <= 3  # the memory an issuer keeps stays within its bound
    # Every token still verifies (the ones let go are checked again in full).
    for user, token in reversed(list(enumerate(issued))):
        assert issuer.verify(token, ACCESS).user_id == user
