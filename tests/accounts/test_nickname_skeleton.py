"""The look-alike keys of a nickname (``nickname_skeletons``): nicknames that look alike share one,
Korean nicknames are their own keys, and the keys are stable and fit their columns."""

from __future__ import annotations

import itertools
import random
import unicodedata

import pytest
from sqlalchemy import String

from accounts.confusable_prototypes import PROTOTYPES, UNICODE_VERSION
from accounts.nicknames import (
    MAX_NICKNAME_LENGTH,
    MAX_SKELETON_GROWTH,
    NicknameSkeletons,
    nickname_key,
    nickname_skeletons,
    normalize_nickname,
)
from storage.models import User


def _keys(nickname: str) -> NicknameSkeletons:
    return nickname_skeletons(normalize_nickname(nickname))


def _look_alike(one: str, other: str) -> bool:
    """Whether the two nicknames share a look-alike key (then only one user may hold them)."""
    return any(a == b for a, b in zip(_keys(one), _keys(other), strict=True))


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
    # capitals of other scripts that look like Latin capitals (the cased key)
    ("HANA", "НАNА"),  # Cyrillic Н А
    ("hana", "НАNА"),
    ("BEAN", "ΒΕΑΝ"),  # Greek Β Ε Α Ν
    ("HELLO", "ΗΕLLΟ"),
    ("KATYA", "КАТYА"),
    # a capital I is an l to the eye
    ("lily", "Iily"),
    ("Paypal", "PaypaI"),
    # and case pairs of other scripts are one name too (the folded key)
    ("Наташа", "наташа"),
]


@pytest.mark.parametrize(("mine", "theirs"), LOOK_ALIKES, ids=[f"{a}={b}" for a, b in LOOK_ALIKES])
def test_look_alikes_share_a_key(mine: str, theirs: str) -> None:
    assert mine != theirs
    assert _look_alike(mine, theirs)


DIFFERENT = [
    ("alice", "alicia"),
    ("José", "Jose"),  # an accent is visible: UTS #39 keeps it
    ("ivan", "lvan"),  # a dotted i is no l (but a capital I is: see LOOK_ALIKES)
    ("love", "lave"),
    ("소소해피", "소소행복"),
    ("하늘", "하눌"),
    ("행복abc", "행복abd"),
    # Known gap: a case change on one letter and a look-alike capital on another, in one nickname (the
    # folded key misses the Cyrillic Н, the cased key the i/I case pair).
    ("Iha", "iНa"),
]


@pytest.mark.parametrize(("one", "other"), DIFFERENT, ids=[f"{a}!={b}" for a, b in DIFFERENT])
def test_different_nicknames_share_no_key(one: str, other: str) -> None:
    assert not _look_alike(one, other)


def test_the_keys_read_as_documented() -> None:
    assert _keys("Alice") == ("alice", "alice")
    assert _keys("ｋｉｍｂ７６７") == ("kirnb767", "kirnb767")  # m is read as rn, in every nickname alike
    assert _keys("l0ve") == ("love", "love")
    assert _keys("José") == ("josé", "josé")
    # Case first: a Cyrillic capital folds to a small letter that looks like no Latin one; the cased key
    # maps the capital as written.
    assert _keys("НАNА") == ("\u029cana", "hana")
    # Prototypes first: a capital I is an l, so the case pair Ivan/ivan is left to the folded key.
    assert _keys("Ivan") == ("ivan", "lvan") and _keys("ivan") == ("ivan", "ivan")
    assert UNICODE_VERSION == "13.0.0" and PROTOTYPES["\u0456"] == "i" and PROTOTYPES["0"] == "O"
    assert PROTOTYPES["I"] == "l" and PROTOTYPES["\u041d"] == "H"


def test_every_hangul_syllable_is_its_own_skeleton() -> None:
    syllables = [chr(code) for code in range(0xAC00, 0xD7A4)]
    assert len(syllables) == 11172
    for syllable in syllables:
        assert unicodedata.normalize("NFKC", syllable) == syllable  # NFKC never splits a syllable
        assert nickname_skeletons(syllable) == (syllable, syllable)


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
    keys = {name: _keys(name) for name in names}
    assert all(key == (name, name) for name, key in keys.items())
    assert (
        len({key.folded for key in keys.values()}) == len({key.cased for key in keys.values()}) == len(names)
    )
    # Korean with Latin letters or digits keeps its syllables; only the other characters are folded.
    assert _keys("행복ABC") == ("행복abc", "행복abc")
    assert _keys("행복2024") == ("행복2o24", "행복2o24")  # 0 reads as o, as in test_look_alikes_share_a_key
    # A decomposed spelling is the same nickname once canonical, so the same keys.
    assert _keys(unicodedata.normalize("NFD", "소소해피")) == ("소소해피", "소소해피")


def test_pairs_of_syllables_keep_apart() -> None:
    """No two syllable pairs share a key (a sample of all 11172² pairs, first syllables fixed)."""
    firsts = ["가", "소", "행", "힣"]
    seen: dict[str, str] = {}
    for first, second in itertools.product(firsts, (chr(c) for c in range(0xAC00, 0xD7A4))):
        name = first + second
        for key in nickname_skeletons(name):
            assert seen.setdefault(key, name) == name


def test_the_keys_are_idempotent_and_fit_their_columns() -> None:
    """Over every assigned character that is a valid nickname: a key is its own key, and no character
    grows past ``MAX_SKELETON_GROWTH``, so a 10-character nickname's keys fit their columns."""
    longest = 0
    for code in range(0x110000):
        char = chr(code)
        if unicodedata.category(char) == "Cn" or nickname_key(char) != char:
            continue
        keys = nickname_skeletons(char)
        assert nickname_skeletons(keys.folded).folded == keys.folded, f"U+{code:04X}"
        assert nickname_skeletons(keys.cased).cased == keys.cased, f"U+{code:04X}"
        longest = max(longest, *map(len, keys))
    assert longest == MAX_SKELETON_GROWTH == 18  # U+FDFA ARABIC LIGATURE SALLALLAHOU ALAYHE WASALLAM
    for column in (User.__table__.c.nickname_folded_skeleton, User.__table__.c.nickname_cased_skeleton):
        assert isinstance(column.type, String) and column.type.length is not None
        assert longest * MAX_NICKNAME_LENGTH <= column.type.length
    assert (
        nickname_skeletons("\ufdfa" * MAX_NICKNAME_LENGTH).folded == nickname_skeletons("\ufdfa").folded * 10
    )
