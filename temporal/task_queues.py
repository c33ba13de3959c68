"""Task-queue names. Workers poll these; the API starts workflows on them."""

from __future__ import annotations

#: Sign-in, nickname change, resign: account flows that touch MySQL, Mongo and Apple.
ACCOUNTS = "sosohappy-accounts"
#: Push delivery through firebase-admin.
PUSH = "sosohappy-push"

ALL = (ACCOUNTS, PUSH)
