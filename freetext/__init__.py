"""What free text (a diary entry, an introduction, a direct message, an opaque provider id) may hold.

Free text is shown to other users as it was written, so it may hold any letter, emoji (with its
joiners and variation selectors), line breaks and tabs, but not the characters that only disguise
or break it: control characters other than tab and line breaks (NUL, escape, C1), and the bidirectional
embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069) that make text read in another order
than it is stored ("Trojan source"). Lone surrogates cannot be stored as UTF-8. The directional marks
U+200E/U+200F, which right-to-left text legitimately uses, stay allowed.
"""

from __future__ import annotations

import re

#: C0 controls except tab, line feed and carriage return; DEL and the C1 controls; the bidirectional
#: embeddings/overrides and isolates; lone surrogates.
_REFUSED = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def refused_character(text: str) -> str | None:
    """Why ``text`` cannot be taken as free text (naming the first character at fault), or ``None``."""
    found = _REFUSED.search(text)
    if found is None:
        return None
    char = found.group()
    if "\ud800" <= char <= "\udfff":
        return "must be valid Unicode (no lone surrogates)"
    return f"must not contain the control or direction character U+{ord(char):04X}"
