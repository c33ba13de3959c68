"""The sign-in code challenge: SHA-512 of the verifier, in the client's or the original server's hex form."""

from __future__ import annotations

import hashlib


def challenge_matches(stored_challenge: str, verifier: str) -> bool:
    """True when ``stored_challenge`` is the SHA-512 of ``verifier`` as hex.

    Compared as numbers, so the client's 128-digit zero-padded hex and the original server's form
    (``%064x``, which drops leading zeros) are both accepted.
    """
    try:
        stored = int(stored_challenge.strip(), 16)
    except ValueError:
        return False
    return stored == int.from_bytes(hashlib.sha512(verifier.encode()).digest(), "big")
