"""The local stand-ins for production's parts, run as child processes on 127.0.0.1.

``gateway dev`` and ``gateway cluster`` are built from them, and so are the tests and the
benchmark. One module per part:

  processes.py  what every child process shares: ports, waits, the unprivileged user, logs
  postgres.py   a PostgreSQL cluster in a folder (initdb, postgres)
  s3servers.py  S3 over HTTP: moto's server (in memory) and ``rclone serve s3`` (files)
  s3proxy.py    an HTTP proxy in front of S3 that answers 500s when told to (fault injection)
  pgbouncer.py  PgBouncer in transaction pooling mode in front of PostgreSQL
  nginx.py      nginx in front of gateways, with the config shipped in deploy/
  instances.py  ``gateway serve`` processes
  datadir.py    the data folder: one user at a time, its S3 key pair, the saved dev token
  seed.py       schema, administrator, demo project and a token that survives restarts
  dev.py        ``gateway dev``
  cluster.py    ``gateway cluster``, and the readiness watch that keeps nginx's rotation honest,
                and the faults a soak injects into it part by part
"""
