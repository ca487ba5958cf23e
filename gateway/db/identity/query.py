"""The small builders the identity queries share: WHERE clauses with their arguments, and one
page of a SELECT with its total."""

from __future__ import annotations

import asyncpg


class Where:
    """Conditions and their ``$n`` arguments, built together so the numbers always match.

    ``Where(fixed)`` starts with arguments the base query already uses as ``$1``…``$n``.
    """

    def __init__(self, fixed: list[object] | None = None) -> None:
        self.args: list[object] = list(fixed or [])
        self._conditions: list[str] = []

    def arg(self, value: object) -> str:
        self.args.append(value)
        return f"${len(self.args)}"

    def add(self, condition: str) -> None:
        self._conditions.append(condition)

    def equals(self, column: str, value: object) -> None:
        """``column = value`` unless value is None (an absent filter)."""
        if value is not None:
            self.add(f"{column} = {self.arg(value)}")

    def like(self, columns: tuple[str, ...], term: str | None) -> None:
        """Case-insensitive substring on any of ``columns`` (LIKE's wildcards literal)."""
        if term:
            escaped = term.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            p = self.arg(f"%{escaped}%")
            self.add("(" + " OR ".join(f"lower({c}) LIKE {p}" for c in columns) + ")")

    @property
    def sql(self) -> str:
        return " AND ".join(self._conditions) or "true"


async def page(
    conn: asyncpg.Connection, base: str, args: list[object], order: str, limit: int, offset: int,
    *, count: bool = True,
) -> tuple[list[asyncpg.Record], int]:
    """One page of ``base`` (a SELECT) and the number of rows it has in all (-1 when not
    ``count``: keyset pages show no total)."""
    total = await conn.fetchval(f"SELECT count(*) FROM ({base}) b", *args) if count else -1
    n = len(args)
    rows = await conn.fetch(
        f"{base} ORDER BY {order} LIMIT ${n + 1} OFFSET ${n + 2}", *args, limit, offset
    )
    return rows, total
