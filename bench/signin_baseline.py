"""The sign-in steps without Temporal, as a bare ASGI app: the baseline of ``bench.signin``.

Same database functions as the API and the workflow's activities (redeem the code with its verifier,
upsert the account bound to its provider id, open the login, register the device) and the same token
issuer, called inline.
"""

from __future__ import annotations

import json
import uuid
from urllib.parse import parse_qs

from accounts.emails import validated_email
from accounts.identities import bound_provider_id
from accounts.pkce import challenge_matches
from accounts.tokens import TokenIssuer
from config import Settings
from storage import devices, logins, users
from storage.db import create_db_engine, session_factory

settings = Settings(env="test")  # a benchmark process: the public default secret is fine
sessions = session_factory(create_db_engine(settings.sqlalchemy_url))
tokens = TokenIssuer(settings)


async def app(scope, receive, send):
    """POST /signIn with a url-encoded body: the direct path."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
    status, payload, headers = 403, {"nickname": ""}, []
    with sessions.begin() as session:
        redeemed = logins.redeem_authorize_code(
            session,
            form["authorizeCode"],
            lambda challenge: challenge_matches(challenge, form["codeVerifier"]),
        )
        if redeemed is logins.Redemption.REDEEMED:
            account = f"{validated_email(form['email'])}+{form['provider']}"
            provider_id = bound_provider_id(form["providerId"])
            user = users.upsert_account(session, account, form["provider"], provider_id, None)
            login = logins.open_session(
                session, user.id, settings.refresh_token_ttl_seconds, str(uuid.uuid4())
            )
            devices.register_device(session, user.id, form["deviceToken"], login.id)
            access, refresh = tokens.pair(account, user.id, login.id, 0)
            status = 200
            headers = [
                (b"Authorization", f"Bearer {access}".encode()),
                (b"authorization-refresh", f"Bearer {refresh}".encode()),
                (b"email", account.encode()),
            ]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), *headers],
        }
    )
    await send({"type": "http.response.body", "body": json.dumps(payload).encode()})
