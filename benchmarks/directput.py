"""One direct upload in a process of its own (``python -m benchmarks.directput ENDPOINT
BUCKET KEY PATH``): boto3's ``upload_file`` with its default TransferConfig, as the benchmark's
direct side, so n of them at once compare with n curl uploads through the gateway (one
process each, not n transfers sharing one interpreter's lock).

The process imports boto3 and makes its client first, then says ``ready`` and waits for a line
on stdin before it uploads, so that n processes starting up (boto3 costs about a CPU-second to
import) are not timed as the upload. Credentials from the environment; prints ``done`` or exits
non-zero with the error on stderr."""

from __future__ import annotations

import sys

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config


def main() -> int:
    endpoint, bucket, key, path = sys.argv[1:5]
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
    print("ready", flush=True)
    sys.stdin.readline()
    s3.upload_file(path, bucket, key, Config=TransferConfig())
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
