"""A nickname that looks like another user's (case, fullwidth, Cyrillic or Greek letters, 0 for o) is
taken, as the client expects a taken nickname to be answered; the owner may respell their own; look-ups
stay exact; and the database, not only a check before it, keeps two look-alikes from both winning."""

from __future__ import annotations

import random
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
from sqlalchemy import or_, select, update

from accounts.nicknames import nickname_skeletons
from activities.deps import ActivityDeps
from storage.models import User
from tests.api.feed_helpers import member
from tests.fixtures.ios_client import IOSClient

FULLWIDTH = {chr(code): chr(code + 0xFEE0) for code in range(0x21, 0x7F)}


def _fresh() -> str:
    """A fresh 9-character nickname with an ``a`` (for a Cyrillic ``а``) and only letters and digits."""
    return "ka" + uuid.uuid4().hex[:7]


def _look_alikes(nickname: str) -> list[str]:
    """Distinct spellings of ``nickname`` that look like it (``nickname`` must contain an ``a``)."""
    fullwidth = "".join(FULLWIDTH[c] for c in nickname)
    forms = [
        nickname.upper(),
        nickname[0].upper() + nickname[1:],
        fullwidth,
        fullwidth.upper(),
        nickname.replace("a", "\u0430"),  # Cyrillic а
        nickname.upper().replace("A", "\u0391"),  # Greek Α
        nickname.upper().replace("K", "\u041a").replace("A", "\u0410"),  # Cyrillic capitals К А
        "".join(FULLWIDTH[c] if i % 2 else c for i, c in enumerate(nickname)),
    ]
    assert len({nickname, *forms}) == len(forms) + 1
    # Each pair shares a key (the cased one, at least), so at most one user may hold any two of them.
    assert {nickname_skeletons(form).cased for form in forms} == {nickname_skeletons(nickname).cased}
    return forms


def _signed_in(http: httpx.Client) -> IOSClient:
    app = IOSClient(http)
    assert app.sign_in(f"la{uuid.uuid4().hex[:10]}@gmail.com").status_code == 200
    return app


def _set_profile(app: IOSClient, nickname: str, introduction: str | None = None) -> httpx.Response:
    parts = [("email", app.email), ("nickname", nickname)]
    if introduction is not None:
        parts.append(("introduction", introduction))
    return app.post_multipart("/auth-service/setProfile", parts)


def _is_present(app: IOSClient, nickname: str) -> bool:
    resp = app.get_query("/auth-service/checkDuplicateNickname", {"nickname": nickname})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["email"] is None
    return bool(body["isPresent"])


def _stored(deps: ActivityDeps, email: str) -> tuple[str | None, str | None, str | None]:
    """``(nickname, folded key, cased key)`` of the account ``email``, as the database holds them."""
    with deps.sessions() as session:
        row = session.execute(
            select(User.nickname, User.nickname_folded_skeleton, User.nickname_cased_skeleton).where(
                User.account_email == email
            )
        ).one()
        return row.nickname, row.nickname_folded_skeleton, row.nickname_cased_skeleton


def test_a_look_alike_of_another_users_nickname_is_taken(
    http: httpx.Client, activity_deps: ActivityDeps
) -> None:
    nickname = _fresh()
    owner = member(http, nickname)
    newcomer = _signed_in(http)
    for fake in _look_alikes(nickname):
        assert _is_present(newcomer, fake), fake
        resp = _set_profile(newcomer, fake)
        assert resp.status_code == 409 and "taken" in resp.json()["message"], fake
    assert _stored(activity_deps, newcomer.email) == (None, None, None)
    assert _stored(activity_deps, owner.email) == (nickname, *nickname_skeletons(nickname))
    # A nickname that only resembles it in part is free.
    assert not _is_present(newcomer, nickname[:-1] + "z")


def test_look_ups_stay_exact_and_never_resolve_a_look_alike(http: httpx.Client) -> None:
    nickname = _fresh()
    owner = member(http, nickname)
    assert _set_profile(owner, nickname, "the real one").status_code == 200
    viewer = member(http, _fresh())
    assert viewer.post_multipart("/auth-service/findIntroduction", [("nickname", nickname)]).json() == {
        "introduction": "the real one"
    }
    for fake in _look_alikes(nickname):
        found = viewer.post_multipart("/auth-service/findIntroduction", [("nickname", fake)])
        assert found.json() == {"introduction": ""}, fake
        image = viewer.post_multipart("/auth-service/findProfileImg", [("nickname", fake)])
        assert image.json() == {"nickname": "", "profileImg": ""}, fake


def test_the_owner_may_respell_their_own_nickname(http: httpx.Client, activity_deps: ActivityDeps) -> None:
    nickname = _fresh()
    owner = member(http, nickname)
    other = _signed_in(http)
    for respelled in _look_alikes(nickname):
        assert not _is_present(owner, respelled), respelled
        assert _set_profile(owner, respelled).status_code == 200, respelled
        assert _stored(activity_deps, owner.email) == (respelled, *nickname_skeletons(respelled))
        assert _is_present(other, nickname)  # still the owner's, in every spelling
    # Renamed to something else, the old nickname and its look-alikes are free again.
    assert _set_profile(owner, _fresh()).status_code == 200
    assert not _is_present(other, nickname.upper())
    assert _set_profile(other, nickname.upper()).status_code == 200


def test_korean_nicknames_are_claimed_by_their_syllables(
    http: httpx.Client, activity_deps: ActivityDeps
) -> None:
    suffix = "".join(random.choice("bcdefghjknpqrstuvwxyz") for _ in range(5))  # its own key, no 0 or 1
    mine, close = f"행복ab{suffix}", f"행볶ab{suffix}"  # one syllable apart: two nicknames
    first, second = member(http, mine), member(http, close)
    assert _stored(activity_deps, first.email) == (mine, mine, mine)  # syllables are their own keys
    assert _stored(activity_deps, second.email) == (close, close, close)
    third = _signed_in(http)
    for fake in [f"행복AB{suffix}", f"행복ａｂ{suffix}", f"행복\u0430b{suffix}"]:
        assert _is_present(third, fake), fake
        assert _set_profile(third, fake).status_code == 409, fake


def test_a_user_left_without_the_key_keeps_their_nickname(
    http: httpx.Client, activity_deps: ActivityDeps
) -> None:
    """Revision 0013 leaves a later look-alike's nickname working without the key: sending it again (the
    app does with every profile edit) still works, while another look-alike of it is refused."""
    nickname = _fresh()
    member(http, nickname)
    legacy = member(http, _fresh())
    with activity_deps.sessions.begin() as session:
        session.execute(
            update(User)
            .where(User.account_email == legacy.email)
            .values(nickname=nickname.upper(), nickname_folded_skeleton=None, nickname_cased_skeleton=None)
        )
    assert not _is_present(legacy, nickname.upper())
    resp = _set_profile(legacy, nickname.upper(), "edited")
    assert resp.json() == {"email": legacy.email, "success": True}
    assert _stored(activity_deps, legacy.email) == (nickname.upper(), None, None)
    assert _is_present(legacy, nickname[0].upper() + nickname[1:])
    assert _set_profile(legacy, nickname[0].upper() + nickname[1:]).status_code == 409


def _claim_together(apps: list[IOSClient], forms: list[str]) -> list[httpx.Response]:
    """setProfile of ``forms[i]`` by ``apps[i]``, all sent at the same moment."""
    start = threading.Barrier(len(apps))

    def claim(app: IOSClient, form: str) -> httpx.Response:
        start.wait()
        return _set_profile(app, form)

    with ThreadPoolExecutor(len(apps)) as pool:
        return list(pool.map(claim, apps, forms))


def test_parallel_claims_of_look_alikes_leave_one_winner(
    http: httpx.Client, activity_deps: ActivityDeps
) -> None:
    """Sent together, several claims pass the check before any of them commits: the unique key on
    ``users.nickname_cased_skeleton`` is what lets exactly one win (without the unique keys, this test
    sees two or more winners)."""
    nickname = _fresh()
    forms, keys = [nickname, *_look_alikes(nickname)], nickname_skeletons(nickname)
    for round_ in range(3):
        apps = [_signed_in(http) for _ in forms]
        answers = _claim_together(apps, forms)
        codes = sorted(resp.status_code for resp in answers)
        assert codes == [200] + [409] * (len(forms) - 1), [resp.text for resp in answers]
        with activity_deps.sessions() as session:
            holders = session.scalars(
                select(User.account_email).where(
                    or_(
                        User.nickname_folded_skeleton == keys.folded,
                        User.nickname_cased_skeleton == keys.cased,
                    )
                )
            ).all()
        [winner] = [app for app, resp in zip(apps, answers, strict=True) if resp.status_code == 200]
        assert holders == [winner.email]
        losers = [app for app in apps if app is not winner]
        assert all(_stored(activity_deps, app.email) == (None, None, None) for app in losers)
        # Free the key for the next round.
        assert _set_profile(winner, _fresh()).status_code == 200, round_
