"""Moved to :mod:`gateway.devtools`; these names stay importable from here for code written
against the old module."""

from gateway.devtools.postgres import PostgresCluster, find_pg_binary
from gateway.devtools.processes import (
    LocalServiceError,
    child_pids,
    free_port,
    port_is_free,
    wait_for_port,
)
from gateway.devtools.s3servers import MotoServer, RcloneS3Server, S3Server, find_rclone

_child_pids = child_pids

__all__ = ["LocalServiceError", "MotoServer", "PostgresCluster", "RcloneS3Server", "S3Server",
           "child_pids", "find_pg_binary", "find_rclone", "free_port", "port_is_free",
           "wait_for_port"]
