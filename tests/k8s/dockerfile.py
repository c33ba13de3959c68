"""Reading the ``Dockerfile`` and ``.dockerignore`` the way Docker does, without a Docker engine."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field

from tests.k8s import ROOT

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
#: The modules the image runs (`python -m <module>`): the API, the worker, the migration Job and the
#: codec server.
ENTRY_MODULES = ("api.serve", "workers.main", "storage.migrate", "temporal.codec_server")


@dataclass
class Stage:
    """One build stage: its base image, its name and its instructions after FROM."""

    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        """The arguments of every ``keyword`` instruction of the stage, in order."""
        return [value for kw, value in self.instructions if kw == keyword]


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, rest = current.partition(" ")
        out.append((keyword.upper(), rest.strip()))
        current = ""
    assert not current, "dangling line continuation"
    return out


def _substitute(value: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), value)


def parse_stages(text: str) -> list[Stage]:
    """The build stages of a Dockerfile, global ARGs substituted into FROM."""
    global_args: dict[str, str] = {}
    result: list[Stage] = []
    for keyword, value in instructions(text):
        if keyword == "FROM":
            parts = _substitute(value, global_args).split()
            assert all(not p.startswith("--") for p in parts), "no --platform pinning in FROM"
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            result.append(Stage(base=parts[0], name=name))
        elif not result:
            assert keyword == "ARG", f"only ARG may precede the first FROM, not {keyword}"
            arg_name, _, default = value.partition("=")
            global_args[arg_name] = default
        else:
            result[-1].instructions.append((keyword, value))
    return result


def flags_and_operands(value: str) -> tuple[dict[str, str], list[str]]:
    """An instruction's ``--flag=value`` options and its other operands."""
    flags: dict[str, str] = {}
    operands: list[str] = []
    for token in value.split():
        if token.startswith("--"):
            key, _, val = token[2:].partition("=")
            flags[key] = val
        else:
            operands.append(token)
    return flags, operands


def dockerignore_excludes(path: str) -> bool:
    """Docker's rule: the last matching pattern decides; a pattern also matches everything below it."""
    excluded = False
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if pattern.startswith("**/"):
            matched = any(fnmatch.fnmatch(part, pattern[3:]) for part in parts)
        else:
            matched = any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes)
        if matched:
            excluded = not negate
    return excluded


def context_copies(stages: list[Stage]) -> list[tuple[str, str]]:
    """(source, destination) of every COPY from the build context."""
    out: list[tuple[str, str]] = []
    for stage in stages:
        for value in stage.args("COPY"):
            flags, operands = flags_and_operands(value)
            if "from" in flags:
                continue
            *sources, dest = operands
            out.extend((source, dest) for source in sources)
    return out
