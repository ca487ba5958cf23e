"""The in-process gateway for protocol tests that need no client process of their own."""

from __future__ import annotations

from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class Served:
    """Where the ``client`` fixture's gateway (this process, a loopback port) answers."""

    url: str
    port: int


@pytest.fixture
def served(client) -> Served:
    return Served(str(client.make_url("")).rstrip("/"), client.server.port)
