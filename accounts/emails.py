"""Account e-mail rules: what a submitted provider e-mail may look like, and its one canonical form.

The canonical form is NFC, lower-cased. Domains are case-insensitive by DNS, and every provider the
client signs in with (Kakao, Google, Apple's relay, the mail hosts behind them) treats the local part
case-insensitively too, so ``Jin.So@Gmail.com`` and ``jin.so@gmail.com`` are one person. The original
server stored accounts under MySQL's case-insensitive collation, so it already treated them as one
account; lower-casing keeps that, and makes the ``email`` response header, the JWT claim, the users
row and every comparison in Python the same string (the column compares exactly, ``storage.models``).
"""

from __future__ import annotations

import re
import unicodedata

#: RFC 5321's limit on a forward path (254 octets for an ASCII address).
MAX_EMAIL_LENGTH = 254
MAX_LOCAL_PART_LENGTH = 64
MAX_LABEL_LENGTH = 63

# Local part: RFC 5322 atext plus dots (no quoted strings), or any non-ASCII letter (RFC 6531).
_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.\-\u0080-\U0010ffff]+")
# Domain label: letters, digits and inner hyphens; non-ASCII for internationalised names.
_LABEL = re.compile(
    r"[A-Za-z0-9\u0080-\U0010ffff]([A-Za-z0-9\-\u0080-\U0010ffff]*[A-Za-z0-9\u0080-\U0010ffff])?"
)


class InvalidEmail(ValueError):
    """The submitted e-mail is not a plausible address; the message says why."""


def normalize_email(value: str) -> str:
    """The canonical form of an e-mail or of an account id ``<email>+<provider>``: NFC, lower case."""
    return unicodedata.normalize("NFC", value).lower()


def same_account(a: str, b: str) -> bool:
    """True when two e-mails (or account ids) are the same account, whatever case a client kept."""
    return normalize_email(a) == normalize_email(b)


def _refused_character(value: str) -> str | None:
    for char in value:
        # Cc/Cf/Cs/Co/Cn: control, format (zero-width, bidi marks), surrogates, private, unassigned;
        # Z*: every kind of space. None of them belongs in an address, a header or a key.
        if unicodedata.category(char)[0] in "CZ":
            return char
    return None


def validated_email(raw: str) -> str:
    """The canonical form of a submitted sign-in e-mail, or ``InvalidEmail`` naming the problem.

    Refused: control, format and whitespace characters (they would reach the ``email`` response
    header), more than ``MAX_EMAIL_LENGTH`` characters, and anything that is not ``local@domain`` with
    a dot-atom local part and a dotted domain (so the client's ``unknownEmail`` fallback is refused,
    as the original server's ``@Email`` did).
    """
    bad = _refused_character(raw)
    if bad is not None:
        raise InvalidEmail(
            f"email must not contain whitespace or control characters (found U+{ord(bad):04X})"
        )
    email = normalize_email(raw)
    if len(email) > MAX_EMAIL_LENGTH:
        raise InvalidEmail(f"email must be at most {MAX_EMAIL_LENGTH} characters")
    if email.count("@") != 1:
        raise InvalidEmail("email must be an e-mail address (local@domain)")
    local, domain = email.split("@")
    if not local or len(local) > MAX_LOCAL_PART_LENGTH or not _LOCAL.fullmatch(local):
        raise InvalidEmail("email must be an e-mail address (bad local part)")
    if local.startswith(".") or local.endswith(".") or ".." in local:
        raise InvalidEmail("email must be an e-mail address (bad dots in the local part)")
    labels = domain.split(".")
    if len(labels) < 2 or not all(
        len(label) <= MAX_LABEL_LENGTH and _LABEL.fullmatch(label) for label in labels
    ):
        raise InvalidEmail("email must be an e-mail address (bad domain)")
    return email
