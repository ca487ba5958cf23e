"""JSON log lines that never carry a token or a header value.

Redaction happens at the source (the access log drops credential query parameters, the HTTP
edge logs what it refused by kind, never the offending bytes, and no code logs headers), and a
filter on the one handler is the net for everything else that reaches stderr: aiohttp's and
asyncio's records and tracebacks included.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import time
from typing import Any

import orjson
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web import BaseRequest, RequestKey, StreamResponse

from gateway.redact import REDACTED, is_credential_param, redact_text

_STD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
# Where an access-log line finds the client address a trusted proxy reported (api/forwarded.py).
CLIENT_ADDRESS = RequestKey("client_address", str)
# Where the HTTP edge leaves the kind of a refused request for the access log (edge.py).
REFUSED = RequestKey("refused", str)
# The body bytes a handler actually received (gateway/api/generic_packages.py's RequestBody):
# less than Content-Length when the client hung up or the answer came before the body ended.
BYTES_IN = RequestKey("bytes_in", int)
# The id of the request being handled (gateway/requestids.py): on every line written for it.
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
# Where the access log finds it (its line is written once the request's context is gone).
REQUEST_ID = RequestKey("request_id", str)
# The address of the client of the request being handled (a trusted proxy's forwarded one when
# there is one): what audit events record as ``ip_address``.
client_address: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "client_address", default=None)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if (rid := request_id.get()) is not None:
            line["request_id"] = rid
        line.update({k: v for k, v in vars(record).items() if k not in _STD})
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return orjson.dumps(line, default=str).decode()


class RedactingFilter(logging.Filter):
    """The net under every log record: message, arguments, extra fields and traceback are
    rendered to text and stripped of tokens, credential headers and credential parameters.

    An HTTP parser error's text quotes the offending request line or header verbatim, so a
    traceback of one keeps only the exception's type."""

    def __init__(self, formatter: logging.Formatter | None = None) -> None:
        super().__init__()
        self._formatter = formatter or logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact_text(_message(record))
        record.args = None
        if record.exc_info:
            record.exc_text = redact_text(_traceback(self._formatter, record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        for key, value in list(vars(record).items()):
            if key not in _STD and isinstance(value, str):
                setattr(record, key, redact_text(value))
        return True


def _message(record: logging.LogRecord) -> str:
    try:
        text = record.getMessage()
    except Exception:  # a broken format string must not lose the line
        text = str(record.msg)
    return text


def _traceback(formatter: logging.Formatter, exc_info: Any) -> str:
    _, exc, _ = exc_info
    chain, seen = exc, set()
    while chain is not None and id(chain) not in seen:
        seen.add(id(chain))
        if isinstance(chain, HttpProcessingError):
            return f"{type(chain).__module__}.{type(chain).__qualname__}: {REDACTED}"
        chain = chain.__cause__ or chain.__context__
    return formatter.formatException(exc_info)


def safe_path(request: BaseRequest) -> str:
    """The request path, with credential-bearing query parameters redacted."""
    if not request.query_string:
        return request.path
    parts = [
        f"{k}={REDACTED}" if is_credential_param(k) else f"{k}={v}"
        for k, v in request.query.items()
    ]
    return f"{request.path}?{'&'.join(parts)}"


class AccessLogger(AbstractAccessLogger):
    """One line per answered request. ``remote`` is the client as a trusted proxy reported it,
    else the peer; status 499 is a client that hung up before its answer."""

    def log(self, request: BaseRequest, response: StreamResponse, duration: float) -> None:
        extra: dict[str, Any] = {
            "method": request.method,
            "path": safe_path(request),
            "status": response.status,
            "bytes_in": _bytes_in(request),
            "ms": round(duration * 1000, 1),
            "remote": request.get(CLIENT_ADDRESS) or request.remote,
            "request_id": request.get(REQUEST_ID),
        }
        refused = request.get(REFUSED)
        if refused is not None:
            # A request the parser refused has no method or path worth logging.
            extra.update(method="-", path="-", bytes_in=None, refused=refused)
        self.logger.info("request", extra=extra)


def _bytes_in(request: BaseRequest) -> int | None:
    """The body bytes received: counted by the handler that read them, else the declared
    length of a body read to its end, else what aiohttp's parser took in of it."""
    counted = request.get(BYTES_IN)
    if counted is not None:
        return counted
    length = request.content_length
    content = request.content
    if length is None or content.is_eof():
        return length
    return getattr(content, "total_bytes", length)


def setup(level: str = "INFO") -> None:
    formatter = JsonFormatter()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    handler.addFilter(RedactingFilter(formatter))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # botocore logs request details at DEBUG; keep it quiet unless asked.
    for noisy in ("botocore", "aiobotocore", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, logging.getLevelName(level)))
    # Python's warnings (ResourceWarning and the like) go through the same filter.
    logging.captureWarnings(True)
