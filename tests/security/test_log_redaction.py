"""The log's last net: whatever reaches the handler (aiohttp's, asyncio's or our own records,
tracebacks included) leaves it without a token, a credential header value or a credential
query parameter."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
from aiohttp.http_exceptions import BadHttpMessage, InvalidHeader

from gateway import logs

TOKEN = "glpat-Zq3x9KpLmN0vBcXwY1aS"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    out = io.StringIO()
    formatter = logs.JsonFormatter()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    handler.addFilter(logs.RedactingFilter(formatter))
    logger = logging.getLogger("test.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    yield out
    logger.removeHandler(handler)


def log() -> logging.Logger:
    return logging.getLogger("test.redaction")


def test_parser_error_traceback_keeps_only_the_exception_type(captured: io.StringIO) -> None:
    try:
        raise InvalidHeader(f"PRIVATE-TOKEN: {TOKEN}\x01".encode())
    except InvalidHeader:
        log().exception("Error handling request from %s", "127.0.0.1")
    line = captured.getvalue()
    assert TOKEN not in line and TOKEN[6:] not in line
    assert "InvalidHeader" in line


def test_exception_caused_by_a_parser_error_is_redacted(captured: io.StringIO) -> None:
    try:
        try:
            raise BadHttpMessage(f"Invalid header value char:\n\n  b'X-Marker: {TOKEN[6:]}'")
        except BadHttpMessage as exc:
            raise RuntimeError("wrapped") from exc
    except RuntimeError:
        log().exception("unhandled")
    assert TOKEN[6:] not in captured.getvalue()


@pytest.mark.parametrize("text", [
    f"GET /api/v4/projects?private_token={TOKEN}&page=2",
    f"GET /x?job_token={TOKEN[6:]}",
    f"headers: {{'PRIVATE-TOKEN': '{TOKEN[6:]}'}}",
    f"Authorization: Bearer {TOKEN[6:]}",
    "Authorization: Basic Z2l0bGFiLWNpLXRva2VuOmdscGF0LVpxM3g5S3BMbU4wdkJjWHdZMWFT",
    f"token {TOKEN} in plain text",
])
def test_credentials_in_a_message_are_redacted(captured: io.StringIO, text: str) -> None:
    log().warning("seen: %s", text)
    line = captured.getvalue()
    assert TOKEN[6:] not in line
    assert "Z2l0bGFi" not in line
    assert "[redacted]" in line


@pytest.mark.parametrize("text", [
    "pRiVaTe-ToKeN: SECRETVALUE1",
    "COOKIE: SECRETVALUE1",
    "Proxy-Authorization: Basic SECRETVALUE1",
    "GET /x?ACCESS_TOKEN%3DSECRETVALUE1",
    "café private_token=SECRETVALUE1",
])
def test_credentials_in_any_letter_case_or_beside_other_letters_are_redacted(
        captured: io.StringIO, text: str) -> None:
    log().warning("seen: %s", text)
    assert "SECRETVALUE1" not in captured.getvalue()


def test_credentials_in_extra_fields_are_redacted(captured: io.StringIO) -> None:
    log().info("request", extra={"path": f"/x?private_token={TOKEN}"})
    assert TOKEN not in captured.getvalue()


def test_plain_messages_pass_unchanged(captured: io.StringIO) -> None:
    log().info("upload stored", extra={"bytes": 5, "path": "/api/v4/projects/1?page=2"})
    assert '"path":"/api/v4/projects/1?page=2"' in captured.getvalue()
