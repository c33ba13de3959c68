"""Provider identities: which ``providerId`` values identify a person and which are the client's placeholders.

An account (``<email>+<provider>``) is bound to the first real provider id it is signed in with and
refused for any other (``storage.users.upsert_account``). The iOS client sends a placeholder when the
provider SDK gave it no id (CLIENT_CONTRACT §3.2): ``0`` for Kakao, ``unknownId`` for Google. A
placeholder identifies nobody, so it never binds an account and never matches a bound one.
"""

from __future__ import annotations

#: What the client sends instead of a provider id it does not have (either provider's spelling is
#: treated as a placeholder for all three: neither is a real Kakao, Google or Apple id).
PLACEHOLDER_PROVIDER_IDS = frozenset({"0", "unknownId"})


def bound_provider_id(provider_id: str) -> str | None:
    """The identity ``provider_id`` stands for, or ``None`` for a placeholder (no identity)."""
    return None if provider_id in PLACEHOLDER_PROVIDER_IDS else provider_id
