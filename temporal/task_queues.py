"""Task-queue names. Workers poll these; the API starts workflows on them."""

from __future__ import annotations

#: Sign-in, nickname change, resign: account flows that touch MySQL, Mongo and Apple.
ACCOUNTS = "sosohappy-accounts"
#: Push delivery through firebase-admin.
PUSH = "sosohappy-push"
#: Sign-in alone: every API process's own worker polls it (eager start, api.sign_in_worker) and so
#: does the worker pool.
SIGN_IN = "sosohappy-sign-in"

ALL = (ACCOUNTS, PUSH, SIGN_IN)
