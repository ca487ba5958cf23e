"""``gateway serve`` with the discarding store in place of S3: the gateway's own ceiling.

Configured by the same ``GATEWAY_*`` variables; PostgreSQL is still used for tokens and rows.
"""

from __future__ import annotations

import sys

from gateway import config, logs
from gateway.server import serve
from gateway.storage.memory import NullStore


def main() -> int:
    settings = config.from_env(s3_bucket="null")
    logs.setup(settings.log_level)
    serve(settings, store=NullStore())
    return 0


if __name__ == "__main__":
    sys.exit(main())
