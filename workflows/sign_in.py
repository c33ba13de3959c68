"""``SignInWorkflow``: (Apple exchange) -> account upsert bound to the provider identity, login and device.

The API has already validated the request, redeemed the authorize code with its verifier and stored the
request (``storage.sign_in_requests``) before it starts this workflow with the request's id: the
activities read the e-mail, provider id, device token and Apple code from that row and the exchange
writes Apple's refresh token back to it, so none of them, nor the code or its verifier, reaches the
history. Short database steps run as local activities (sign-in is latency-sensitive); the Apple exchange
is a regular activity so its retries are visible in the history. Tokens are minted by the API, so no
token ever enters the history either.

Runs started with the request in their input (recorded histories, an older API during a rollout) take
the steps of that version: the branch is decided by the input, so replay stays deterministic.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from accounts.emails import same_account
    from activities.accounts import APPLE_CODE_SPENT, REQUEST_GONE, AccountActivities
    from temporal import search_attributes as sa
    from temporal.accounts import (
        AppleExchangeInput,
        ConsumeCodeInput,
        OpenLoginInput,
        OpenLoginResult,
        OpenRequestedLogin,
        SignInInput,
        SignInResult,
    )

#: Marks runs of this version: the API redeems the authorize code (no consume step unless the input
#: still carries a code) and the Apple id_token's e-mail must equal the submitted one. Histories
#: recorded without the marker replay the old steps.
API_REDEEMS_CODES = "api-redeems-codes"
DB_TIMEOUT = timedelta(seconds=10)
DB_RETRY = RetryPolicy(maximum_attempts=5)
#: One attempt of the Apple check; its Apple calls end sooner (``activities.accounts.APPLE_CALLS_SECONDS``).
APPLE_TIMEOUT = timedelta(seconds=10)
APPLE_PERMANENT = ["AppleRejected", "InvalidAuthorizationCode"]
APPLE_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=300),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=2),
    maximum_attempts=4,
    non_retryable_error_types=APPLE_PERMANENT,
)


@workflow.defn(sandboxed=False)  # a hot path: see workflows/__init__.py, "Outside the sandbox"
class SignInWorkflow:
    """One sign-in per authorize code (workflow ID ``sign-in:<hash of the code>``)."""

    @workflow.run
    async def run(self, req: SignInInput) -> SignInResult:
        """Return ``ok`` with the login, or why the sign-in is refused."""
        if req.request_id:
            return await self._sign_in_request(req)
        return await self._legacy(req)

    async def _sign_in_request(self, req: SignInInput) -> SignInResult:
        """The sign-in of the stored request ``req.request_id``: ids and verdicts only cross Temporal."""
        if req.provider == "apple":
            try:
                check = await workflow.execute_activity_method(
                    AccountActivities.check_apple_code,
                    req.request_id,
                    start_to_close_timeout=APPLE_TIMEOUT,
                    retry_policy=APPLE_RETRY,
                )
            except ActivityError as err:
                return _apple_failed(err)
            if not check.sub_matches:
                return SignInResult(status="forbidden", reason="Apple identity does not match providerId")
            if not check.email_matches:
                return SignInResult(status="forbidden", reason="the Apple id_token is for another e-mail")
        login = await workflow.execute_local_activity_method(
            AccountActivities.open_requested_login,
            OpenRequestedLogin(
                request_id=req.request_id,
                session_id=str(workflow.uuid4()),
                refresh_ttl_seconds=req.refresh_ttl_seconds,
            ),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
        )
        return _answer(req.provider, login)

    async def _legacy(self, req: SignInInput) -> SignInResult:
        """Runs started with the request in the input: the steps of those versions, unchanged."""
        current = workflow.patched(API_REDEEMS_CODES)
        if not current or req.authorize_code:
            # Recorded histories, and starts by an API replica that does not redeem codes yet (a
            # rollout in progress): the code comes in the input and is consumed here, as before.
            valid = await workflow.execute_local_activity_method(
                AccountActivities.consume_authorize_code,
                ConsumeCodeInput(authorize_code=req.authorize_code, code_verifier=req.code_verifier),
                start_to_close_timeout=DB_TIMEOUT,
                retry_policy=DB_RETRY,
            )
            if not valid:
                return SignInResult(
                    status="forbidden", reason="authorize code unknown, expired or verifier mismatch"
                )

        apple_refresh_token: str | None = None
        if req.provider == "apple":
            try:
                identity = await workflow.execute_activity_method(
                    AccountActivities.exchange_apple_code,
                    AppleExchangeInput(authorization_code_b64=req.authorization_code),
                    start_to_close_timeout=APPLE_TIMEOUT,
                    retry_policy=APPLE_RETRY,
                )
            except ActivityError as err:
                return _apple_failed(err)
            if identity.sub != req.provider_id:
                return SignInResult(status="forbidden", reason="Apple identity does not match providerId")
            if current and identity.email and not same_account(identity.email, req.email):
                return SignInResult(status="forbidden", reason="the Apple id_token is for another e-mail")
            apple_refresh_token = identity.refresh_token

        login = await workflow.execute_local_activity_method(
            AccountActivities.open_login,
            OpenLoginInput(
                account_email=req.account_email,
                provider=req.provider,
                provider_id=req.provider_id,
                apple_refresh_token=apple_refresh_token,
                device_token=req.device_token,
                session_id=str(workflow.uuid4()),
                refresh_ttl_seconds=req.refresh_ttl_seconds,
            ),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
        )
        return _answer(req.provider, login, req.account_email)


def _apple_failed(err: ActivityError) -> SignInResult:
    """The answer when the Apple exchange failed: refused (permanent) or unavailable (retries spent, or
    a retry found the code spent by the attempt before it: not the user's fault, they sign in again)."""
    cause = err.cause
    if isinstance(cause, ApplicationError) and cause.type == APPLE_CODE_SPENT:
        return SignInResult(status="unavailable", reason="the Apple code was spent by an interrupted attempt")
    if isinstance(cause, ApplicationError) and cause.type in APPLE_PERMANENT:
        return SignInResult(status="forbidden", reason=f"Apple refused the sign-in: {cause.message}")
    if isinstance(cause, ApplicationError) and cause.type == REQUEST_GONE:
        return SignInResult(status="forbidden", reason="this sign-in request has expired")
    return SignInResult(status="unavailable", reason="Apple could not be reached; try again")


def _answer(provider: str, login: OpenLoginResult, account_email: str = "") -> SignInResult:
    """The result of an opened login, or the refusal of a provider mismatch (``SosoOutcome``)."""
    if login.status == "provider-mismatch":
        # Somebody presented another identity for an existing account: a takeover attempt or a
        # provider account change; either way the account is not opened (SosoOutcome finds them).
        workflow.upsert_search_attributes([sa.OUTCOME.value_set("provider-mismatch")])
        return SignInResult(
            status="forbidden", reason=f"this account is bound to another {provider} identity"
        )
    workflow.upsert_search_attributes([sa.USER_ID.value_set(str(login.user_id))])
    return SignInResult(
        status="ok",
        user_id=login.user_id,
        account_email=account_email,
        nickname=login.nickname,
        session_id=login.session_id,
    )
