"""Part sizes: every object up to S3's 5 TiB fits in its 10,000 parts of 5 MiB to 5 GiB."""

from __future__ import annotations

import pytest

from gateway.config import GiB, MiB, TiB
from gateway.uploads import MAX_OBJECT_SIZE, MAX_PART_SIZE, MAX_PARTS, part_size_for

BASE = 8 * MiB


def parts_needed(size: int, base: int = BASE) -> int:
    part = part_size_for(1, size, base)
    return -(-size // part)


@pytest.mark.parametrize("per_part", [BASE, 9 * MiB, 8 * MiB + 1, 100 * MiB + 7, 524 * MiB])
def test_known_size_of_exactly_10000_parts_fits(per_part: int) -> None:
    assert parts_needed(MAX_PARTS * per_part) <= MAX_PARTS


@pytest.mark.parametrize("per_part", [BASE, 9 * MiB, 8 * MiB + 1, 100 * MiB + 7, 524 * MiB])
def test_known_size_one_byte_over_10000_parts_still_fits(per_part: int) -> None:
    assert parts_needed(MAX_PARTS * per_part + 1) <= MAX_PARTS


def test_known_size_of_10000_whole_parts_uses_exactly_10000() -> None:
    assert part_size_for(1, MAX_PARTS * 9 * MiB, BASE) == 9 * MiB
    assert parts_needed(MAX_PARTS * 9 * MiB) == MAX_PARTS


def test_one_byte_more_takes_the_next_whole_mib() -> None:
    assert part_size_for(1, MAX_PARTS * 9 * MiB + 1, BASE) == 10 * MiB


def test_small_known_size_keeps_the_configured_part_size() -> None:
    assert part_size_for(1, 3 * GiB, BASE) == BASE


def test_five_tib_known_size_fits_without_a_part_over_5_gib() -> None:
    part = part_size_for(1, MAX_OBJECT_SIZE, BASE)
    assert part <= MAX_PART_SIZE
    assert parts_needed(MAX_OBJECT_SIZE) <= MAX_PARTS


def test_known_size_gives_every_part_the_same_size() -> None:
    size = 777 * GiB
    assert {part_size_for(n, size, BASE) for n in (1, 2, 5_000, 10_000)} == {
        part_size_for(1, size, BASE)
    }


@pytest.mark.parametrize("base", [5 * MiB, BASE, 64 * MiB, 1 * GiB, 5 * GiB])
def test_unknown_length_schedule_holds_5_tib_in_10000_parts(base: int) -> None:
    schedule = [part_size_for(n, None, base) for n in range(1, MAX_PARTS + 1)]
    assert sum(schedule) >= 5 * TiB


@pytest.mark.parametrize("base", [5 * MiB, BASE, 64 * MiB, 1 * GiB, 5 * GiB])
def test_unknown_length_schedule_has_no_part_over_5_gib(base: int) -> None:
    assert max(part_size_for(n, None, base) for n in range(1, MAX_PARTS + 1)) <= 5 * GiB


@pytest.mark.parametrize("base", [5 * MiB, BASE, 64 * MiB, 1 * GiB, 5 * GiB])
def test_unknown_length_schedule_has_no_part_under_5_mib(base: int) -> None:
    assert min(part_size_for(n, None, base) for n in range(1, MAX_PARTS + 1)) >= 5 * MiB


def test_unknown_length_starts_at_the_configured_part_size() -> None:
    assert part_size_for(1, None, BASE) == BASE
    assert part_size_for(1_000, None, BASE) == BASE
    assert part_size_for(1_001, None, BASE) == 2 * BASE
