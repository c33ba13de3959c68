"""Custom search attributes, registered on the namespace by the dev stack and ``temporal/k8s`` jobs.

They let an operator find a workflow by business key in the Web UI or with
``temporal workflow list --query 'SosoUserId="42"'``.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

#: The user a workflow is about (receiver of a push, the resigning user, ...), as a decimal string.
USER_ID = SearchAttributeKey.for_keyword("SosoUserId")
#: What the workflow does: ``push-like``, ``push-dm``, ``sign-in``, ``resign``, ``nickname-change``.
KIND = SearchAttributeKey.for_keyword("SosoKind")
#: A business outcome a completed workflow ends with (``sent``, ``token-removed``, ``apple-refused``...).
OUTCOME = SearchAttributeKey.for_keyword("SosoOutcome")

ALL = (USER_ID, KIND, OUTCOME)


def about(user_id: int, kind: str) -> TypedSearchAttributes:
    """The attributes a workflow about one user starts with: ``SosoUserId`` and ``SosoKind``."""
    return TypedSearchAttributes(
        [SearchAttributePair(USER_ID, str(user_id)), SearchAttributePair(KIND, kind)]
    )


def cli_flags() -> list[str]:
    """``--search-attribute Name=Type`` flags for ``temporal server start-dev``."""
    flags: list[str] = []
    for key in ALL:
        flags += ["--search-attribute", f"{key.name}=Keyword"]
    return flags
