"""The e-mail rules: what a sign-in e-mail may be, and its canonical form (pure logic)."""

from __future__ import annotations

import pytest

from accounts.emails import MAX_EMAIL_LENGTH, InvalidEmail, normalize_email, same_account, validated_email
from accounts.identities import bound_provider_id


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("jin.so@gmail.com", "jin.so@gmail.com"),
        ("Jin.So@Gmail.COM", "jin.so@gmail.com"),
        ("me+tag@gmail.com", "me+tag@gmail.com"),  # real addresses may hold '+' (CLIENT_CONTRACT §8.3)
        ("abc123@privaterelay.appleid.com", "abc123@privaterelay.appleid.com"),
        ("o'brien_x-y@mail.example.co.kr", "o'brien_x-y@mail.example.co.kr"),
        ("소소@해피.한국", "소소@해피.한국"),
        ("Cafe\u0301@example.com", "caf\u00e9@example.com"),  # NFC: one spelling of é
    ],
)
def test_plausible_addresses_get_their_canonical_form(raw: str, canonical: str) -> None:
    assert validated_email(raw) == canonical


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("victim@gmail.com\r\nX-Injected: 1", "control characters (found U+000D)"),
        ("tab\t@gmail.com", "control characters"),
        ("a b@gmail.com", "whitespace"),
        (" lead@gmail.com", "whitespace"),
        ("nbsp\u00a0@gmail.com", "whitespace"),
        ("zero\u200bwidth@gmail.com", "(found U+200B)"),
        ("\u202eevil@gmail.com", "(found U+202E)"),
        ("unknownEmail", "local@domain"),
        ("two@@gmail.com", "local@domain"),
        ("a@b@gmail.com", "local@domain"),
        ("@gmail.com", "bad local part"),
        ("x" * 65 + "@gmail.com", "bad local part"),
        ("<x>@gmail.com", "bad local part"),
        (".dot@gmail.com", "bad dots"),
        ("do..t@gmail.com", "bad dots"),
        ("x@localhost", "bad domain"),
        ("x@-bad.com", "bad domain"),
        ("x@bad..com", "bad domain"),
        ("x@" + "a" * 64 + ".com", "bad domain"),
    ],
)
def test_implausible_addresses_are_refused_with_a_reason(raw: str, reason: str) -> None:
    with pytest.raises(InvalidEmail) as info:
        validated_email(raw)
    assert reason in str(info.value)


def test_length_limit_is_254_characters() -> None:
    domain = ".".join(["d" * 63] * 3) + ".com"  # 195 characters: labels at their limit
    longest = "l" * (MAX_EMAIL_LENGTH - 1 - len(domain)) + "@" + domain
    assert len(longest) == 254 and validated_email(longest) == longest
    with pytest.raises(InvalidEmail, match="at most 254 characters"):
        validated_email("l" + longest)


def test_account_ids_compare_canonically() -> None:
    assert normalize_email("Jin.So@Gmail.com+kakao") == "jin.so@gmail.com+kakao"
    assert same_account("Jin.So@Gmail.com+kakao", "jin.so@gmail.com+kakao")
    assert not same_account("jin.so@gmail.com+kakao", "jin.so@gmail.com+google")
    assert not same_account("jin.so@gmail.com+kakao", "jinso@gmail.com+kakao")


def test_placeholders_identify_nobody() -> None:
    assert bound_provider_id("0") is None
    assert bound_provider_id("unknownId") is None
    assert bound_provider_id("3141592653") == "3141592653"
    assert bound_provider_id("001234.5f3c.0815") == "001234.5f3c.0815"
