-- Tocsin's reference events table, modelled on a device-management platform's events.
-- Applications insert rows; the source stage reads them from logical replication.
-- Idempotent: safe to run on every start.

CREATE TABLE IF NOT EXISTS events (
    id            bigserial   PRIMARY KEY,
    org_id        text        NOT NULL,
    resource_kind text        NOT NULL,  -- e.g. Device, Fleet
    resource_name text        NOT NULL,
    reason        text        NOT NULL,  -- e.g. DeviceDisconnected
    message       text        NOT NULL DEFAULT '',
    severity      text        NOT NULL DEFAULT '',
    fields        jsonb       NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS events_org_id_created_at_idx ON events (org_id, created_at);
