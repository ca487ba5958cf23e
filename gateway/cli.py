"""``gateway serve | migrate | dev | admin …``: builds Settings once; the only module that exits."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from gateway import config

log = logging.getLogger("gateway.cli")


def _install_uvloop() -> None:
    import asyncio

    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _run(coro: object) -> object:
    # asyncio is imported here, not above: ``gateway upload`` needs none of it.
    import asyncio

    _install_uvloop()
    return asyncio.run(coro)  # type: ignore[arg-type]


def cmd_serve(settings: config.Settings, args: argparse.Namespace) -> int:
    from gateway.server import serve

    if args.workers is not None:
        settings = settings.with_overrides(workers=args.workers)
        config.validate(settings)
    config.require_serving(settings)
    serve(settings)
    return 0


def cmd_migrate(settings: config.Settings, args: argparse.Namespace) -> int:
    import asyncpg

    from gateway.db.migrate import MigrationError, migrate

    if not settings.database_url:
        raise config.ConfigError("GATEWAY_DATABASE_URL is required (a PostgreSQL DSN)")
    try:
        report = _run(migrate(settings.database_url, pgbouncer=settings.db_pgbouncer))
    except MigrationError as exc:
        print(f"gateway: migration failed: {exc}", file=sys.stderr)
        return 1
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        print(f"gateway: cannot migrate the database: {exc}", file=sys.stderr)
        return 1
    print(report)
    return 0


def cmd_bootstrap(settings: config.Settings, args: argparse.Namespace) -> int:
    from gateway.db.pool import connect
    from gateway.identity import seed

    if not settings.database_url:
        raise config.ConfigError("GATEWAY_DATABASE_URL is required (a PostgreSQL DSN)")

    async def go() -> str:
        conn = await connect(settings.database_url, pgbouncer=settings.db_pgbouncer)
        try:
            return await seed.bootstrap(conn)
        finally:
            await conn.close()

    token = _run(go())
    print(f"administrator: {seed.ADMIN_USERNAME}", file=sys.stderr)
    print(token)
    return 0


def cmd_sweep(settings: config.Settings, args: argparse.Namespace) -> int:
    from gateway.sweeper import sweep_once

    config.require_serving(settings)
    report = _run(sweep_once(settings, dry_run=args.dry_run))
    print(report)
    return 0


def cmd_retention(settings: config.Settings, args: argparse.Namespace) -> int:
    from gateway.governance.retention import run_once

    if not settings.database_url:
        raise config.ConfigError("GATEWAY_DATABASE_URL is required (a PostgreSQL DSN)")
    print(_run(run_once(settings, dry_run=args.dry_run,
                        progress=lambda line: print(line, flush=True))))
    return 0


def cmd_dev(settings: config.Settings, args: argparse.Namespace) -> int:
    from gateway.devtools.dev import run_dev

    return run_dev(settings, Path(args.data_dir), port=args.port)


def cmd_cluster(settings: config.Settings, args: argparse.Namespace) -> int:
    from gateway.devtools.cluster import run_cluster

    return run_cluster(settings, Path(args.data_dir), port=args.port)


def cmd_upload(args: argparse.Namespace) -> int:
    """A client on the user's machine: no gateway settings, nothing of the server imported
    (its start counts against every upload)."""
    import json
    import os

    from gateway import upload_client as uc

    options = uc.Options(
        Path(args.file), args.url, args.token or os.environ.get("PACKGATE_TOKEN"),
        resume=args.resume,
        chunk_size=uc.parse_size(args.chunk_size) if args.chunk_size else None,
        limit_rate=uc.parse_size(args.limit_rate) if args.limit_rate else None,
        retries=args.retries,
    )
    try:
        answer = uc.upload(options)
    except (uc.UploadFailed, *uc.NETWORK_ERRORS) as exc:
        print(f"gateway upload: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(answer))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gateway", description="packgate: a GitLab-compatible generic package registry"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the API (configured by GATEWAY_* variables)")
    serve.add_argument(
        "--workers", type=int, default=None,
        help="processes sharing the port (default GATEWAY_WORKERS, 1)",
    )
    serve.set_defaults(func=cmd_serve)
    sub.add_parser(
        "migrate", help="apply the numbered schema migrations not applied yet (safe to repeat)"
    ).set_defaults(func=cmd_migrate)
    dev = sub.add_parser(
        "dev", help="PostgreSQL, a local S3 server and the gateway in one data folder"
    )
    dev.add_argument("--data-dir", default=".packgate", help="where everything is kept")
    dev.add_argument("--port", type=int, default=None, help="gateway port (default 8080)")
    dev.set_defaults(func=cmd_dev)
    cluster = sub.add_parser(
        "cluster", help="dev's PostgreSQL and S3 behind PgBouncer, 3 gateways, nginx in front"
    )
    cluster.add_argument("--data-dir", default=".packgate-cluster",
                         help="where everything is kept")
    cluster.add_argument("--port", type=int, default=8080, help="nginx's port (default 8080)")
    cluster.set_defaults(func=cmd_cluster)
    up = sub.add_parser(
        "upload", help="upload FILE to a generic package file URL, resumably (IETF protocol)"
    )
    up.add_argument("file", help="the file to send")
    up.add_argument("url", help="…/api/v4/projects/:id/packages/generic/:name/:version/:file")
    up.add_argument("--resume", action="store_true",
                    help="continue this file's unfinished upload to this URL, if any")
    up.add_argument("--token", help="a token (default: $PACKGATE_TOKEN), sent as PRIVATE-TOKEN")
    up.add_argument("--chunk-size", help="bytes per request, e.g. 64M (default: all in one)")
    up.add_argument("--limit-rate", help="at most this many bytes per second, e.g. 10M")
    up.add_argument("--retries", type=int, default=5,
                    help="how often a broken transfer is resumed before giving up (default 5)")
    up.set_defaults(func=cmd_upload)
    admin = sub.add_parser("admin", help="administration").add_subparsers(
        dest="admin_command", required=True
    )
    admin.add_parser(
        "bootstrap", help="create the administrator if missing and print a new token"
    ).set_defaults(func=cmd_bootstrap)
    sweep = admin.add_parser("sweep-uploads", help="abort stale pending uploads now")
    sweep.add_argument("--dry-run", action="store_true", help="only list what would be aborted")
    sweep.set_defaults(func=cmd_sweep)
    retention = admin.add_parser("retention", help="the projects' package retention policies")
    retention_commands = retention.add_subparsers(dest="retention_command", required=True)
    run = retention_commands.add_parser(
        "run", help="apply every project's retention policy now (a progress line per project)")
    run.add_argument("--dry-run", action="store_true", help="only list what would be deleted")
    run.set_defaults(func=cmd_retention)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.func is cmd_upload:
            return cmd_upload(args)
        from gateway import logs

        settings = config.from_env()
        logs.setup(settings.log_level)
        return args.func(settings, args)
    except config.ConfigError as exc:
        print(f"gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
