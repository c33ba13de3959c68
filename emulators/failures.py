"""Injected failures shared by the emulators: a rule per key that fires ``times`` times or forever."""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar


class CountedRule(Protocol):
    """A failure rule with an optional remaining count."""

    times: int | None


R = TypeVar("R", bound=CountedRule)


class FailureBook(Generic[R]):
    """Failure rules by key (a device token, an endpoint); callers hold the emulator's lock."""

    def __init__(self) -> None:
        self._rules: dict[str, R] = {}

    def add(self, key: str, rule: R) -> None:
        """Fail calls for ``key`` as ``rule`` says, replacing any earlier rule."""
        self._rules[key] = rule

    def take(self, key: str) -> R | None:
        """The rule to apply to this call for ``key``, consuming one of its remaining ``times``."""
        rule = self._rules.get(key)
        if rule is not None and rule.times is not None:
            rule.times -= 1
            if rule.times <= 0:
                del self._rules[key]
        return rule

    def clear(self) -> None:
        """Forget every rule."""
        self._rules.clear()
