"""Governance: who may push and delete which package names (GitLab's package protection
rules), what is recorded of who did what (audit events), how much a project may store (storage
quotas) and what is kept (retention policies). Services: they decide, own their transactions
and return frozen values; the SQL is ``gateway.db.governance``."""
