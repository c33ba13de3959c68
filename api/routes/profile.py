"""Routes under ``/auth-service`` about who a user is to others: nickname checks, the profile (nickname,
introduction, picture) and blocks. Sign-in, tokens and resign under the same prefix are
``api.routes.auth``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Form, Query
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from accounts.emails import same_account
from api.bodies import AccountResult, DuplicateNicknameBody, IntroductionBody, ProfileImageBody, SuccessBody
from api.deps import ResourcesDep, SessionDep
from api.errors import BadRequest, Conflict, Forbidden, NotTheCaller, PayloadTooLarge, error_responses
from api.forms import BlockForm, NicknameForm, NicknameQuery, ProfileForm
from api.images import sniffed_upload_type, upload_size
from api.params import ClientRoute
from api.resources import Resources
from api.security import AuthenticatedUser, CurrentUser
from storage import users
from storage.db import retry_deadlocks
from storage.models import User

router = APIRouter(
    prefix="/auth-service", tags=["auth"], route_class=ClientRoute, responses=error_responses(400, 403, 503)
)

MAX_PROFILE_IMAGE_BYTES = 5 * 1024 * 1024
#: The multipart body these endpoints take (the model is the whole form).
Multipart = Form(media_type="multipart/form-data")


@router.get("/checkDuplicateNickname")
def check_duplicate_nickname(
    query: Annotated[NicknameQuery, Query()], user: CurrentUser, session: SessionDep
) -> DuplicateNicknameBody:
    """Whether another user has this nickname or one that looks alike (never revealing whose)."""
    return DuplicateNicknameBody(
        email=None, is_present=users.nickname_taken(session, query.nickname, user.id)
    )


@router.post("/setProfile", responses=error_responses(409, 413, 429))
async def set_profile(
    form: Annotated[ProfileForm, Multipart], user: CurrentUser, res: ResourcesDep
) -> AccountResult:
    """Set the caller's nickname, introduction and profile picture (the caller only). A nickname another
    user has, or one that looks like theirs (``accounts.nicknames.nickname_skeletons``), is 409.

    A rename is the users row alone: everything else refers to the user id (direct messages too, shown
    with the current nickname), so it starts no workflow and the old nickname is free at once.
    """
    if not same_account(form.email, user.account_email):
        raise NotTheCaller("email must be the caller's own account")
    nickname = form.nickname
    introduction = form.introduction
    upload = form.profile_img
    image_type: str | None = None
    if upload is not None:  # checked on the spooled file; its bytes are read only to be written
        if await upload_size(upload) > MAX_PROFILE_IMAGE_BYTES:
            raise PayloadTooLarge(f"profileImg must be at most {MAX_PROFILE_IMAGE_BYTES} bytes")
        image_type = await sniffed_upload_type(upload)
        if image_type is None:
            raise BadRequest("profileImg must be a JPEG, PNG or HEIC image")

    def update() -> None:  # in the threadpool: a lock wait must not stall the event loop
        with res.sessions.begin() as session:
            if users.nickname_taken(session, nickname, user.id):
                raise Conflict(f"nickname {nickname!r} is taken")
            row = users.by_id_locked(session, user.id)
            if row is None or users.is_resigning(row):  # a resign committed since the token was checked
                raise Forbidden("the account no longer exists")
            users.set_nickname(row, nickname)
            if introduction is not None:
                row.introduction = introduction.rstrip()
            if upload is not None:
                upload.file.seek(0)  # one column: the picture (at most 5 MB) is read whole, once
                row.profile_image, row.profile_image_type = upload.file.read(), image_type
            try:
                session.flush()
            except IntegrityError:  # a concurrent claim of the same nickname or of a look-alike
                raise Conflict(f"nickname {nickname!r} is taken") from None

    await run_in_threadpool(retry_deadlocks, update)
    return AccountResult(email=user.account_email, success=True)


def _shown_user(session: Session, nickname: str) -> User | None:
    """The user whose profile others see under ``nickname``: ``None`` when none, or one who asked to
    resign (that account is gone for everyone)."""
    owner = users.by_nickname(session, nickname)
    return None if owner is None or users.is_resigning(owner) else owner


@router.post("/findProfileImg")
def find_profile_img(
    form: Annotated[NicknameForm, Multipart], _user: CurrentUser, session: SessionDep
) -> ProfileImageBody:
    """A user's profile picture as base64 (``""`` when none, or an unknown or resigning user)."""
    owner = _shown_user(session, form.nickname)
    if owner is None:
        return ProfileImageBody(nickname="", profile_img="")
    image = owner.profile_image or b""
    return ProfileImageBody(nickname=form.nickname, profile_img=base64.b64encode(image).decode())


@router.post("/findIntroduction")
def find_introduction(
    form: Annotated[NicknameForm, Multipart], _user: CurrentUser, session: SessionDep
) -> IntroductionBody:
    """A user's introduction (``""`` when none, or an unknown or resigning user)."""
    owner = _shown_user(session, form.nickname)
    if owner is None:
        return IntroductionBody(introduction="")
    return IntroductionBody(introduction=owner.introduction)


def _change_block(
    form: BlockForm, user: AuthenticatedUser, res: Resources, change: Callable[[Session, int, int], None]
) -> SuccessBody:
    """Apply ``change`` (block or unblock) from the caller to ``dstNickname``; the caller must be
    ``srcNickname``. One transaction, run again when InnoDB picks it as a deadlock victim (parallel
    blocks and unblocks of one pair deadlock so)."""

    def apply() -> bool:
        with res.sessions.begin() as session:
            me = users.by_id(session, user.id)
            if me is None or form.src_nickname != me.nickname:
                raise NotTheCaller("srcNickname must be the caller's own nickname")
            target = users.by_nickname(session, form.dst_nickname)
            if target is None or target.id == user.id:
                return False
            change(session, user.id, target.id)
            return True

    return SuccessBody(success=retry_deadlocks(apply))


@router.post("/block")
def block(form: Annotated[BlockForm, Multipart], user: CurrentUser, res: ResourcesDep) -> SuccessBody:
    """Hide ``dstNickname``'s feeds from the caller (``success: false`` for an unknown user or oneself)."""
    return _change_block(form, user, res, users.block)


@router.post("/unblock")
def unblock(form: Annotated[BlockForm, Multipart], user: CurrentUser, res: ResourcesDep) -> SuccessBody:
    """Undo a block (``success: false`` for an unknown user)."""
    return _change_block(form, user, res, users.unblock)
