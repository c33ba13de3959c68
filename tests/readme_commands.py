"""The README's ``sh`` command blocks, read as an operator runs them: continuation lines joined, comments
dropped, ``T=.venv/bin/temporal`` style variables put in, each command split as the shell splits words.

The runbook tests hold these commands to the code (flags, ids, search attributes, schedules) and run
some of them against the test stack, so a command the README gives is one that works as written.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

#: The CLI as the local runbooks call it, and the codec flags they give it (``make run``'s codec server).
LOCAL_CLI = ".venv/bin/temporal"
CODEC_ENDPOINT = "http://127.0.0.1:8234"
CODEC_AUTH = "Bearer $(cat .data/codec-server-token)"


@dataclass(frozen=True, repr=False)
class Command:
    """One command of a README ``sh`` block: the heading it is under, its line, its words."""

    section: str
    line: int
    argv: tuple[str, ...]

    def values(self, flag: str) -> list[str]:
        """Every value of ``flag`` (``--flag value`` or ``--flag=value``), in order."""
        found = []
        for i, word in enumerate(self.argv):
            if word == flag and i + 1 < len(self.argv):
                found.append(self.argv[i + 1])
            elif word.startswith(flag + "="):
                found.append(word[len(flag) + 1 :])
        return found

    def value(self, flag: str) -> str | None:
        """The one value of ``flag``, or ``None`` when it is not given."""
        values = self.values(flag)
        assert len(values) <= 1, f"{self}: {flag} given {len(values)} times"
        return values[0] if values else None

    def has(self, *flags: str) -> bool:
        """Whether any of ``flags`` is given (with or without a value)."""
        return any(w == f or w.startswith(f + "=") for w in self.argv for f in flags)

    @property
    def subcommand(self) -> tuple[str, ...]:
        """The CLI's command words before the first flag (``("workflow", "start")``)."""
        words = []
        for word in self.argv[1:]:
            if word.startswith("-"):
                break
            words.append(word)
        return tuple(words)

    def __str__(self) -> str:
        return f"README.md:{self.line} ({self.section}): {shlex.join(self.argv)}"

    __repr__ = __str__


def _blocks(text: str) -> Iterator[tuple[str, int, list[tuple[int, str]]]]:
    """(heading, first line, numbered lines) of each ``sh`` block."""
    section, start = "", 0
    block: list[tuple[int, str]] | None = None
    for number, line in enumerate(text.splitlines(), 1):
        if block is None:
            if line.startswith("#"):
                section = line.lstrip("#").strip()
            elif line.strip() == "```sh":
                block, start = [], number
        elif line.strip() == "```":
            yield section, start, block
            block = None
        else:
            block.append((number, line))


def _substitute(word: str, variables: dict[str, str]) -> str:
    """``word`` with the block's ``$NAME`` variables put in (others left as the shell would expand them)."""
    return re.sub(r"\$([A-Za-z_]\w*)\b", lambda m: variables.get(m.group(1), m.group(0)), word)


def commands(text: str | None = None) -> list[Command]:
    """Every command of every ``sh`` block of the README (or of ``text``)."""
    found: list[Command] = []
    for section, _, lines in _blocks(README.read_text() if text is None else text):
        variables: dict[str, str] = {}
        joined: list[tuple[int, str]] = []
        pending: tuple[int, str] | None = None
        for number, line in lines:
            if pending is not None:
                number, line = pending[0], pending[1] + " " + line.strip()
            if line.rstrip().endswith("\\"):
                pending = (number, line.rstrip()[:-1])
                continue
            pending = None
            joined.append((number, line))
        for number, line in joined:
            words = shlex.split(line, comments=True)
            if len(words) == 1 and (assignment := re.fullmatch(r"([A-Za-z_]\w*)=(\S+)", words[0])):
                variables[assignment.group(1)] = assignment.group(2)
                continue
            words = [_substitute(w, variables) for w in words]
            while words:
                cut = words.index("&&") if "&&" in words else len(words)
                if words[:cut]:
                    found.append(Command(section, number, tuple(words[:cut])))
                words = words[cut + 1 :]
    return found


def local_temporal_commands(text: str | None = None) -> list[Command]:
    """The commands that run the virtualenv's ``temporal`` CLI against ``make run``'s server."""
    return [c for c in commands(text) if c.argv[0] == LOCAL_CLI]


def in_section(section: str, subcommand: tuple[str, ...], text: str | None = None) -> list[Command]:
    """The local ``temporal`` commands ``subcommand`` of the block(s) under heading ``section``."""
    return [c for c in local_temporal_commands(text) if c.section == section and c.subcommand == subcommand]


def inline_spans(text: str | None = None) -> list[str]:
    """The inline code spans of the README's prose (outside fenced blocks), a span that runs over a line
    break joined into one line."""
    parts = re.split(r"^```.*$", README.read_text() if text is None else text, flags=re.MULTILINE)
    prose = " ".join(part for i, part in enumerate(parts) if i % 2 == 0)
    return [re.sub(r"\s+", " ", span) for span in re.findall(r"`([^`]+)`", prose)]
