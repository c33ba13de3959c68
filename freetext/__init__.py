"""What free text (a diary entry, an introduction, a direct message, an opaque provider id) may hold.

Free text is shown to other users as it was written, so it may hold any letter, emoji (with its
joiners and variation selectors), line breaks and tabs, but not the characters that only disguise
or break it: control characters other than tab and line breaks (NUL, escape, C1), the bidirectional
embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069) that make text read in another order
than it is stored ("Trojan source"), and the characters that carry text a reader does not see: the
interlinear annotation characters U+FFF9–U+FFFB (an annotation a renderer shows, hides or drops),
tag characters (U+E0000–U+E007F: invisible ASCII, "ASCII smuggling") outside an emoji tag sequence,
and U+FEFF (a byte order mark belongs before a file, not inside a field; as a zero-width no-break space
it is deprecated for U+2060). Lone surrogates cannot be stored as UTF-8.

The invisible characters with a use in what people write stay allowed: the zero-width joiner U+200D
(emoji ZWJ sequences such as a family, Indic conjuncts) and non-joiner U+200C (Persian, Indic), the
zero-width space U+200B (a line-break opportunity in Thai, Khmer, Lao or Burmese, and common in
pasted text), the word joiner U+2060, and the directional marks U+200E/U+200F of right-to-left text.
None of them changes the order text reads in, nor carries text of its own.
"""

from __future__ import annotations

import re

#: C0 controls except tab, line feed and carriage return; DEL and the C1 controls; the bidirectional
#: embeddings/overrides and isolates; U+FEFF; the interlinear annotation characters; the tag
#: characters (``refused_character`` first takes out the emoji tag sequences); lone surrogates.
_REFUSED = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ufeff\ufff9-\ufffb"
    "\U000e0000-\U000e007f\ud800-\udfff]"
)

#: An emoji tag sequence, the one place tag characters belong (Unicode TS #51): the black flag U+1F3F4,
#: tags spelling a subdivision (3–7 lowercase letters and digits, ``gbeng`` for England's flag), and
#: CANCEL TAG U+E007F. No room for a hidden sentence.
_EMOJI_TAG_SEQUENCE = re.compile("\U0001f3f4[\U000e0030-\U000e0039\U000e0061-\U000e007a]{3,7}\U000e007f")


def refused_character(text: str) -> str | None:
    """Why ``text`` cannot be taken as free text (naming the first character at fault), or ``None``."""
    found = _REFUSED.search(_EMOJI_TAG_SEQUENCE.sub("", text))
    if found is None:
        return None
    char = found.group()
    if "\ud800" <= char <= "\udfff":
        return "must be valid Unicode (no lone surrogates)"
    return f"must not contain the control, direction or hidden-text character U+{ord(char):04X}"
