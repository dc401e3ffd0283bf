-- The latest applied-state report of each running instance of each service
-- (issue 19): what the instance said it runs, as received on
-- system/config/<service>/applied/<instance_id>, kept so the operator's view
-- survives a restart of the manager. Advisory data, written in batches by the
-- manager (only the latest report per instance is kept); never part of an
-- LKG cache, an export or a profile.
CREATE TABLE applied_state (
    service      TEXT    NOT NULL,
    instance_id  TEXT    NOT NULL,
    -- The report as validated JSON (contracts/mqtt-applied-state.schema.json).
    report       TEXT    NOT NULL,
    -- When the manager received it (RFC 3339 UTC, the manager's clock).
    received_at  TEXT    NOT NULL,
    PRIMARY KEY (service, instance_id)
) WITHOUT ROWID;
