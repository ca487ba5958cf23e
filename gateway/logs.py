"""JSON log lines. Tokens never reach a log: the access log drops query strings that carry
credentials, and no code logs headers."""

from __future__ import annotations

import contextvars
import logging
import sys
import time
from typing import Any

import orjson
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, RequestKey, StreamResponse

_SECRET_PARAMS = ("private_token", "job_token", "token", "access_token", "bearer_token")
_STD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
# The id of the request being handled (gateway/requestids.py): on every line written for it.
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
# Where the access log finds it (its line is written once the request's context is gone).
REQUEST_ID = RequestKey("request_id", str)


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
        return orjson.dumps(line, default=str).decode()


def safe_path(request: BaseRequest) -> str:
    """The request path, with credential-bearing query parameters redacted."""
    if not request.query_string:
        return request.path
    parts = [
        f"{k}=[redacted]" if k.lower() in _SECRET_PARAMS else f"{k}={v}"
        for k, v in request.query.items()
    ]
    return f"{request.path}?{'&'.join(parts)}"


class AccessLogger(AbstractAccessLogger):
    def log(self, request: BaseRequest, response: StreamResponse, duration: float) -> None:
        self.logger.info(
            "request",
            extra={
                "method": request.method,
                "path": safe_path(request),
                "status": response.status,
                "bytes_in": request.content_length,
                "ms": round(duration * 1000, 1),
                "remote": request.remote,
                "request_id": request.get(REQUEST_ID),
            },
        )


def setup(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # botocore logs request details at DEBUG; keep it quiet unless asked.
    for noisy in ("botocore", "aiobotocore", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, logging.getLevelName(level)))
