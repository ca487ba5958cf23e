-- Migration 0007: when the periodic retention runner last applied each policy, so the gateways
-- that wake in one GATEWAY_RETENTION_INTERVAL do not apply it again (gateway/governance/retention.py).
ALTER TABLE package_retention_policies ADD COLUMN last_run_at timestamptz;
