"""What every identity service is given: the database, the limits it enforces, and the side
effects a change sets off in this process (the other processes hear of it by NOTIFY)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg

from gateway.db.identity.changes import announce
from gateway.db.pool import Database


def _nothing(*_args: object) -> None:
    return None


@dataclass(frozen=True, slots=True)
class Services:
    db: Database
    # GitLab's ``PersonalAccessToken::MAX_PERSONAL_ACCESS_TOKEN_LIFETIME_IN_DAYS`` by default.
    max_token_lifetime_days: int = 365
    allow_guest_pull: bool = False
    # This process's token cache: dropped right after a change commits (the NOTIFY reaches
    # this process's listener too, but a moment later).
    forget_tokens: Callable[[str], None] = _nothing
    # The object deletion worker: objects of a deleted project, group or user go now.
    wake_deletions: Callable[[], None] = _nothing

    @asynccontextmanager
    async def changing(self, what: str) -> AsyncIterator[asyncpg.Connection]:
        """A transaction that changes identity: every gateway process drops its cached tokens
        when it commits (NOTIFY inside the transaction), this one at once."""
        async with self.db.transaction() as conn:
            yield conn
            await announce(conn, what)
        self.forget_tokens(what)
