"""Settings: read once from the environment into one frozen object, then passed down.

This is the only module that reads ``os.environ``. Every ``GATEWAY_*`` variable must be known
and well-formed, or the start stops with a message naming the variable.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

MiB = 2**20
GiB = 2**30
TiB = 2**40


class ConfigError(ValueError):
    """A setting is missing, unknown or malformed; the message names the variable."""


_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 2**10, "M": MiB, "G": GiB, "T": TiB}


def parse_size(text: str) -> int:
    """Bytes from ``"5368709120"``, ``"5GiB"``, ``"8M"`` (binary units)."""
    m = _SIZE_RE.match(text)
    if not m:
        raise ValueError(f"expected a size such as 8388608, 8MiB or 5TiB, got {text!r}")
    unit = (m.group(2) or "").upper()[:1]
    return int(m.group(1)) * _UNITS[unit]


def parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"expected a whole number, got {text!r}") from None


def parse_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"expected a number, got {text!r}") from None


def parse_bool(text: str) -> bool:
    v = text.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def parse_url(text: str) -> str:
    if not re.match(r"^https?://[^/\s]+", text):
        raise ValueError(f"expected an http:// or https:// URL, got {text!r}")
    return text.rstrip("/")


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """``"10.0.0.0/8, 127.0.0.1, ::1"``: CIDRs or single addresses, comma-separated."""
    networks = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(
                f"expected comma-separated addresses or CIDRs such as 10.0.0.0/8, got {item!r}"
            ) from None
    return tuple(networks)


def choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}, got {text!r}")
        return text

    return parse


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = ""
    # The connection that LISTENs for identity changes; PgBouncer in transaction mode cannot
    # LISTEN, so this may name PostgreSQL itself. Empty: database_url.
    database_listen_url: str = ""
    s3_bucket: str = ""
    s3_endpoint_url: str | None = None
    s3_public_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    # Normally botocore's chain (AWS_ACCESS_KEY_ID, profiles, instance roles) finds the
    # credentials; `gateway dev` sets these for the S3 server it starts itself.
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    # GitLab rejects size >= limit; 0 disables the limit, as GitLab's plan limit does.
    max_file_size: int = 5 * TiB
    download_mode: str = "redirect"
    stale_upload_seconds: int = 900
    # A resumable upload session left without an append this long is aborted by the sweeper.
    resumable_upload_seconds: int = 86400
    # Upload pipeline
    part_size: int = 8 * MiB
    parts_in_flight: int = 2
    # All part buffers of one process together; uploads wait for room (backpressure).
    buffer_budget: int = 256 * MiB
    presign_expires: int = 300
    # Base URL clients use to reach the API (pagination Link headers); default: from the request.
    external_url: str | None = None
    # Bounded waits
    s3_connect_timeout: float = 10.0
    s3_read_timeout: float = 60.0
    s3_max_attempts: int = 4
    # An S3 call (all its attempts) fails after this long without progress (no piece of its
    # body taken, no answer): a frozen S3 is a 503 in bounded time, a slow one still finishes.
    s3_request_deadline: float = 30.0
    db_pool_min: int = 2
    db_pool_max: int = 20
    db_acquire_timeout: float = 10.0
    db_statement_timeout: float = 30.0
    # GATEWAY_DATABASE_URL points at PgBouncer in transaction (or statement) pooling mode.
    db_pgbouncer: bool = False
    body_read_timeout: float = 60.0
    # The HTTP edge: a request's head must arrive within header_timeout; an idle keep-alive
    # connection is closed after keepalive_timeout (above the 60 s of nginx's and most load
    # balancers' upstream keep-alive, so they close first and never reuse a closed one).
    header_timeout: float = 20.0
    keepalive_timeout: float = 75.0
    max_connections: int = 1024
    # Uploads wait at most this long for room in the buffer budget, then get a 503.
    buffer_wait_timeout: float = 30.0
    # Peers whose X-Forwarded-*/Forwarded headers are believed (empty: nobody).
    trusted_proxies: tuple[IPNetwork, ...] = ()
    shutdown_timeout: float = 30.0
    token_cache_seconds: float = 5.0
    # GitLab's maximum access token lifetime (PersonalAccessToken::MAX_..._LIFETIME_IN_DAYS).
    max_token_lifetime_days: int = 365
    workers: int = 1
    log_level: str = "INFO"
    allow_guest_pull: bool = False
    # Prometheus metrics at /metrics; with a token, a scrape must send it as a Bearer token.
    metrics: bool = True
    metrics_token: str | None = field(default=None, repr=False)
    # A port on which a thread answers /-/health even while the event loop is stalled (with
    # several workers, worker n listens on this port + n); None: no such listener.
    health_port: int | None = None
    # The event loop not running for this long is a stall: logged with its stack, health red.
    loop_stall_seconds: float = 1.0
    # The web UI under /-/ui/ (and / redirecting browsers there); sessions last this long.
    ui: bool = True
    ui_session_hours: int = 12
    instance_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}")  # noqa: E501

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    @property
    def listen_url(self) -> str:
        return self.database_listen_url or self.database_url


# variable -> (field, parser): the one place the environment is read.
_ENV: dict[str, tuple[str, Callable[[str], Any]]] = {
    "GATEWAY_DATABASE_URL": ("database_url", str),
    "GATEWAY_DATABASE_LISTEN_URL": ("database_listen_url", str),
    "GATEWAY_S3_BUCKET": ("s3_bucket", str),
    "GATEWAY_S3_ENDPOINT_URL": ("s3_endpoint_url", parse_url),
    "GATEWAY_S3_PUBLIC_ENDPOINT_URL": ("s3_public_endpoint_url", parse_url),
    "GATEWAY_S3_REGION": ("s3_region", str),
    "GATEWAY_HOST": ("host", str),
    "GATEWAY_PORT": ("port", parse_int),
    "GATEWAY_MAX_FILE_SIZE": ("max_file_size", parse_size),
    "GATEWAY_DOWNLOAD_MODE": ("download_mode", choice("redirect", "proxy")),
    "GATEWAY_STALE_UPLOAD_SECONDS": ("stale_upload_seconds", parse_int),
    "GATEWAY_RESUMABLE_UPLOAD_SECONDS": ("resumable_upload_seconds", parse_int),
    "GATEWAY_PART_SIZE": ("part_size", parse_size),
    "GATEWAY_PARTS_IN_FLIGHT": ("parts_in_flight", parse_int),
    "GATEWAY_BUFFER_BUDGET": ("buffer_budget", parse_size),
    "GATEWAY_PRESIGN_EXPIRES": ("presign_expires", parse_int),
    "GATEWAY_EXTERNAL_URL": ("external_url", parse_url),
    "GATEWAY_S3_CONNECT_TIMEOUT": ("s3_connect_timeout", parse_float),
    "GATEWAY_S3_READ_TIMEOUT": ("s3_read_timeout", parse_float),
    "GATEWAY_S3_MAX_ATTEMPTS": ("s3_max_attempts", parse_int),
    "GATEWAY_S3_REQUEST_DEADLINE": ("s3_request_deadline", parse_float),
    "GATEWAY_DB_POOL_MIN": ("db_pool_min", parse_int),
    "GATEWAY_DB_POOL_MAX": ("db_pool_max", parse_int),
    "GATEWAY_DB_ACQUIRE_TIMEOUT": ("db_acquire_timeout", parse_float),
    "GATEWAY_DB_STATEMENT_TIMEOUT": ("db_statement_timeout", parse_float),
    "GATEWAY_DB_PGBOUNCER": ("db_pgbouncer", parse_bool),
    "GATEWAY_BODY_READ_TIMEOUT": ("body_read_timeout", parse_float),
    "GATEWAY_HEADER_TIMEOUT": ("header_timeout", parse_float),
    "GATEWAY_KEEPALIVE_TIMEOUT": ("keepalive_timeout", parse_float),
    "GATEWAY_MAX_CONNECTIONS": ("max_connections", parse_int),
    "GATEWAY_BUFFER_WAIT_TIMEOUT": ("buffer_wait_timeout", parse_float),
    "GATEWAY_TRUSTED_PROXIES": ("trusted_proxies", parse_networks),
    "GATEWAY_SHUTDOWN_TIMEOUT": ("shutdown_timeout", parse_float),
    "GATEWAY_TOKEN_CACHE_SECONDS": ("token_cache_seconds", parse_float),
    "GATEWAY_MAX_TOKEN_LIFETIME_DAYS": ("max_token_lifetime_days", parse_int),
    "GATEWAY_WORKERS": ("workers", parse_int),
    "GATEWAY_LOG_LEVEL": ("log_level", choice("DEBUG", "INFO", "WARNING", "ERROR")),
    "GATEWAY_ALLOW_GUEST_PULL": ("allow_guest_pull", parse_bool),
    "GATEWAY_UI": ("ui", parse_bool),
    "GATEWAY_UI_SESSION_HOURS": ("ui_session_hours", parse_int),
    "GATEWAY_INSTANCE_ID": ("instance_id", str),
    "GATEWAY_METRICS": ("metrics", parse_bool),
    "GATEWAY_METRICS_TOKEN": ("metrics_token", str),
    "GATEWAY_HEALTH_PORT": ("health_port", parse_int),
    "GATEWAY_LOOP_STALL_SECONDS": ("loop_stall_seconds", parse_float),
}

ENV_VARIABLES = tuple(_ENV)


def from_env(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings from ``GATEWAY_*`` variables; unknown or malformed ones raise ConfigError."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name, text in env.items():
        if not name.startswith("GATEWAY_"):
            continue
        if name not in _ENV:
            raise ConfigError(
                f"{name} is not a setting packgate knows (known: {', '.join(sorted(_ENV))})"
            )
        attr, parse = _ENV[name]
        try:
            values[attr] = parse(text)
        except ValueError as exc:
            raise ConfigError(f"{name}: {exc}") from None
    values.update(overrides)
    settings = Settings(**values)
    validate(settings)
    return settings


def to_env(settings: Settings) -> dict[str, str]:
    """The ``GATEWAY_*`` variables that give a child process these settings (those that differ
    from the defaults; the instance id is the child's own)."""
    defaults = Settings(instance_id="")
    env = {}
    for name, (attr, _) in _ENV.items():
        value = getattr(settings, attr)
        if attr == "instance_id" or value is None or value == getattr(defaults, attr):
            continue
        if isinstance(value, bool):
            env[name] = "true" if value else "false"
        elif isinstance(value, tuple):
            env[name] = ",".join(str(item) for item in value)
        else:
            env[name] = str(value)
    return env


def validate(s: Settings) -> None:
    """Cross-field checks; raises ConfigError naming the variable at fault."""
    names = {attr: variable for variable, (attr, _) in _ENV.items()}
    def bad(attr: str, why: str) -> ConfigError:
        return ConfigError(f"{names.get(attr, attr)}: {why}")

    if s.part_size < 5 * MiB or s.part_size > 5 * GiB:
        raise bad("part_size", "must be between 5MiB and 5GiB (S3's part size limits)")
    if s.parts_in_flight < 1:
        raise bad("parts_in_flight", "must be at least 1")
    if s.buffer_budget < s.part_size * (s.parts_in_flight + 1):
        raise bad("buffer_budget", "must hold one upload: part size x (parts in flight + 1)")
    if s.max_file_size < 0:
        raise bad("max_file_size", "must not be negative (0 means no limit)")
    if not 0 < s.port < 65536:
        raise bad("port", "must be between 1 and 65535")
    if s.health_port is not None:
        last = s.health_port + max(1, s.workers) - 1  # worker n listens on health_port + n
        if s.health_port < 1 or last > 65535 or s.health_port <= s.port <= last:
            raise bad("health_port", "must be a port number, and with GATEWAY_WORKERS=N the "
                      "N ports from it must not include GATEWAY_PORT")
    if s.loop_stall_seconds <= 0:
        raise bad("loop_stall_seconds", "must be above 0")
    if s.workers < 1:
        raise bad("workers", "must be at least 1")
    if s.stale_upload_seconds < 1:
        raise bad("stale_upload_seconds", "must be at least 1")
    if s.resumable_upload_seconds < 1:
        raise bad("resumable_upload_seconds", "must be at least 1")
    if not 1 <= s.max_token_lifetime_days <= 100 * 365:
        raise bad("max_token_lifetime_days", "must be between 1 and 36500")
    if s.token_cache_seconds < 0:
        raise bad("token_cache_seconds", "must not be negative")
    for attr in ("header_timeout", "keepalive_timeout", "buffer_wait_timeout"):
        if getattr(s, attr) <= 0:
            raise bad(attr, "must be above 0 seconds")
    if s.max_connections < 1:
        raise bad("max_connections", "must be at least 1")
    if s.s3_request_deadline <= 0:
        raise bad("s3_request_deadline", "must be more than 0 seconds")
    if s.metrics_token is not None and len(s.metrics_token) < 16:
        raise bad("metrics_token", "must be at least 16 characters (a random secret)")
    if not 1 <= s.ui_session_hours <= 24 * 30:
        raise bad("ui_session_hours", "must be between 1 and 720 (30 days)")
    if s.db_pool_min < 0 or s.db_pool_max < max(1, s.db_pool_min):
        raise bad("db_pool_max", "must be at least 1 and at least GATEWAY_DB_POOL_MIN")


def require_serving(s: Settings) -> None:
    """What `gateway serve` needs beyond the defaults."""
    if not s.database_url:
        raise ConfigError("GATEWAY_DATABASE_URL is required (a PostgreSQL DSN)")
    if not s.s3_bucket:
        raise ConfigError("GATEWAY_S3_BUCKET is required")
