"""The look-alike key of a nickname (``nickname_skeleton``): nicknames that look alike share it, Korean
nicknames are their own key, and the key is stable and fits its column."""

from __future__ import annotations

import itertools
import random
import unicodedata

import pytest
from sqlalchemy import String

from accounts.confusable_prototypes import PROTOTYPES, UNICODE_VERSION
from accounts.nicknames import MAX_NICKNAME_LENGTH, nickname_key, nickname_skeleton, normalize_nickname
from storage.models import User

LOOK_ALIKES = [
    # case
    ("alice", "Alice"),
    ("alice", "ALICE"),
    ("kimb767", "KimB767"),
    # compatibility forms: fullwidth letters and digits, mathematical letters, ligatures
    ("kimb767", "ｋｉｍｂ７６７"),
    ("alice", "ＡＬＩＣＥ"),
    ("alice", "𝐚𝐥𝐢𝐜𝐞"),
    ("fin", "ﬁn"),
    # other scripts: Cyrillic а і о е с р, Greek ο α ν, Armenian օ
    ("alice", "аlice"),
    ("alice", "alіce"),
    ("alice", "аlісе"),
    ("poppy", "рорру"),
    ("bob", "bοb"),
    ("anna", "αnnα"),
    ("vova", "νονα"),
    ("bob", "bօb"),
    ("IVAN", "іvan"),  # Cyrillic і and a capital I fold to one i
    # digits read as letters (UTS #39): 0 is O (so o), 1 is l
    ("love", "l0ve"),
    ("love", "1ove"),
    ("LOVE", "l0ve"),
    ("bill", "bi11"),
    # letter pairs that read as one letter
    ("mike", "rnike"),
    # variation selectors change nothing visible
    ("❤", "❤️"),
    # ß folds to ss
    ("strasse", "straße"),
    # Hangul compatibility jamo and halfwidth jamo are the same letters
    ("ㅋㅋ", "ﾻﾻ"),
]


@pytest.mark.parametrize(("mine", "theirs"), LOOK_ALIKES, ids=[f"{a}={b}" for a, b in LOOK_ALIKES])
def test_look_alikes_share_one_skeleton(mine: str, theirs: str) -> None:
    assert mine != theirs
    assert nickname_skeleton(normalize_nickname(mine)) == nickname_skeleton(normalize_nickname(theirs))


DIFFERENT = [
    ("alice", "alicia"),
    ("José", "Jose"),  # an accent is visible: UTS #39 keeps it
    ("ivan", "lvan"),  # a dotted i is no l
    ("love", "lave"),
    ("소소해피", "소소행복"),
    ("하늘", "하눌"),
    ("행복abc", "행복abd"),
    # Known gap: case folds first, so a capital I is an i, not the l it resembles in sans-serif fonts.
    ("Iily", "lily"),
]


@pytest.mark.parametrize(("one", "other"), DIFFERENT, ids=[f"{a}!={b}" for a, b in DIFFERENT])
def test_different_nicknames_have_different_skeletons(one: str, other: str) -> None:
    assert nickname_skeleton(normalize_nickname(one)) != nickname_skeleton(normalize_nickname(other))


def test_the_skeleton_reads_as_documented() -> None:
    assert nickname_skeleton("Alice") == "alice"
    assert nickname_skeleton("ｋｉｍｂ７６７") == "kirnb767"  # m is read as rn, in every nickname alike
    assert nickname_skeleton("l0ve") == "love"
    assert nickname_skeleton("José") == "josé"
    assert UNICODE_VERSION == "13.0.0" and PROTOTYPES["\u0456"] == "i" and PROTOTYPES["0"] == "O"


def test_every_hangul_syllable_is_its_own_skeleton() -> None:
    syllables = [chr(code) for code in range(0xAC00, 0xD7A4)]
    assert len(syllables) == 11172
    for syllable in syllables:
        assert unicodedata.normalize("NFKC", syllable) == syllable  # NFKC never splits a syllable
        assert nickname_skeleton(syllable) == syllable


def test_korean_nicknames_are_unchanged_and_never_collide() -> None:
    names = [
        "소소해피",
        "행복한하루",
        "김민준",
        "이서연",
        "박지훈",
        "최유나",
        "정하늘",
        "하늘바다",
        "행복",
        "행볶",
    ]
    rng = random.Random(39)
    names += [
        "".join(chr(rng.randrange(0xAC00, 0xD7A4)) for _ in range(rng.randint(1, 10))) for _ in range(2000)
    ]
    names = sorted(set(names))
    skeletons = {name: nickname_skeleton(normalize_nickname(name)) for name in names}
    assert all(skeleton == name for name, skeleton in skeletons.items())
    assert len(set(skeletons.values())) == len(names)
    # Korean with Latin letters or digits keeps its syllables; only the other characters are folded.
    assert nickname_skeleton("행복ABC") == "행복abc"
    assert (
        nickname_skeleton("행복2024") == "행복2o24"
    )  # 0 reads as o (see test_look_alikes_share_one_skeleton)
    # A decomposed spelling is the same nickname once canonical, so the same skeleton.
    assert nickname_skeleton(normalize_nickname(unicodedata.normalize("NFD", "소소해피"))) == "소소해피"


def test_pairs_of_syllables_keep_apart() -> None:
    """No two syllable pairs share a skeleton (a sample of all 11172² pairs, first syllables fixed)."""
    firsts = ["가", "소", "행", "힣"]
    seen: dict[str, str] = {}
    for first, second in itertools.product(firsts, (chr(c) for c in range(0xAC00, 0xD7A4))):
        name = first + second
        skeleton = nickname_skeleton(name)
        assert seen.setdefault(skeleton, name) == name


def test_the_skeleton_is_idempotent_and_fits_its_column() -> None:
    """Over every assigned character that is a valid nickname: a skeleton is its own skeleton, and no
    character grows past 18, so a 10-character nickname's key fits ``users.nickname_skeleton``."""
    longest = 0
    for code in range(0x110000):
        char = chr(code)
        if unicodedata.category(char) == "Cn" or nickname_key(char) != char:
            continue
        skeleton = nickname_skeleton(char)
        assert nickname_skeleton(skeleton) == skeleton, f"U+{code:04X}"
        longest = max(longest, len(skeleton))
    assert longest == 18  # U+FDFA ARABIC LIGATURE SALLALLAHOU ALAYHE WASALLAM
    column = User.__table__.c.nickname_skeleton.type
    assert isinstance(column, String) and column.length is not None
    assert longest * MAX_NICKNAME_LENGTH <= column.length
    assert nickname_skeleton("\ufdfa" * MAX_NICKNAME_LENGTH) == nickname_skeleton("\ufdfa") * 10
