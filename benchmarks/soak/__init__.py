"""``python -m benchmarks.soak``: a chaos soak through the local cluster (nginx, 3 gateways,
PgBouncer, PostgreSQL, S3 behind a fault proxy).

Clients upload, download, list and delete while a seeded fault scheduler kills, stops,
restarts and freezes the cluster's parts; every client operation goes into a history, and once
the cluster has settled an invariant checker reads the history, the database and the bucket.

  profiles.py  what a run does: duration, clients, sizes, the faults and how long they last
  bodies.py    upload bodies that can be made again from their op id (to check any byte range)
  history.py   one record per client operation, and the timeline of faults
  workload.py  the clients
  faults.py    the fault scheduler
  checker.py   the invariants
  report.py    tables, JSON and the throughput plot
  run.py       one run, start to end
"""
