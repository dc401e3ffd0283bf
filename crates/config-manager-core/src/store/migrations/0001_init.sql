-- Initial schema of the config-manager database.
-- Every timestamp is RFC 3339 UTC with millisecond precision (fixed width, so
-- string order is time order). Every JSON column holds serde_json text.

-- The epoch of this database. Exactly one row; a rebuild creates a new database
-- with a new epoch, so (epoch, version) identifies a configuration globally.
CREATE TABLE epoch (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    config_epoch    TEXT    NOT NULL,
    created_at      TEXT    NOT NULL,
    previous_epoch  TEXT,
    reason          TEXT    NOT NULL
);

-- One row per change of the loaded service schemas (hash over all documents).
CREATE TABLE schema_version (
    version      INTEGER PRIMARY KEY,
    schema_hash  TEXT    NOT NULL,
    applied_at   TEXT    NOT NULL,
    detail       TEXT
);

-- Current stored configuration of each service: a JSON snapshot of the
-- database-held values (secret values are not here, see `secrets`).
CREATE TABLE configs (
    service       TEXT    PRIMARY KEY,
    config        TEXT    NOT NULL,
    version       INTEGER NOT NULL CHECK (version >= 1),
    config_epoch  TEXT    NOT NULL,
    updated_at    TEXT    NOT NULL,
    updated_by    TEXT    NOT NULL
);

-- Every version of every service's stored configuration. History rows say what
-- changed; this table says what the whole configuration was, which makes
-- point-in-time restore and diffs between any two versions exact.
CREATE TABLE config_versions (
    service        TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    config         TEXT    NOT NULL,
    config_epoch   TEXT    NOT NULL,
    created_at     TEXT    NOT NULL,
    created_by     TEXT    NOT NULL,
    change_reason  TEXT,
    PRIMARY KEY (service, version)
) WITHOUT ROWID;
CREATE INDEX config_versions_time ON config_versions (service, created_at);

-- Per-key view of the current configuration, for search. Secret values are NULL.
CREATE TABLE config_items (
    service      TEXT    NOT NULL,
    key          TEXT    NOT NULL,
    value        TEXT,
    type         TEXT    NOT NULL,
    complexity   TEXT    NOT NULL,
    description  TEXT    NOT NULL,
    is_secret    INTEGER NOT NULL,
    PRIMARY KEY (service, key)
) WITHOUT ROWID;

-- Change history, one row per changed key. Never rewritten: restores append.
CREATE TABLE history (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    service        TEXT    NOT NULL,
    key            TEXT    NOT NULL,
    old_value      TEXT,
    new_value      TEXT,
    version        INTEGER NOT NULL,
    config_epoch   TEXT    NOT NULL,
    changed_at     TEXT    NOT NULL,
    changed_by     TEXT    NOT NULL,
    change_reason  TEXT,
    change_type    TEXT    NOT NULL
);
CREATE INDEX history_service_time ON history (service, changed_at);
CREATE INDEX history_time ON history (changed_at);

-- Named snapshots of every service's stored configuration.
CREATE TABLE profiles (
    name             TEXT PRIMARY KEY,
    description      TEXT,
    config_snapshot  TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    created_by       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    updated_by       TEXT NOT NULL
);

-- Secret values, AES-256-GCM encrypted and bound to (service, key, key_id).
CREATE TABLE secrets (
    service     TEXT NOT NULL,
    key         TEXT NOT NULL,
    ciphertext  TEXT NOT NULL,
    key_id      TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    updated_by  TEXT NOT NULL,
    PRIMARY KEY (service, key)
) WITHOUT ROWID;

-- Who did what: every change, every denial, every secret reveal.
-- `actor` is a token's name, never the token.
CREATE TABLE audit_log (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       TEXT NOT NULL,
    actor    TEXT NOT NULL,
    action   TEXT NOT NULL,
    target   TEXT,
    outcome  TEXT NOT NULL,
    detail   TEXT
);
CREATE INDEX audit_log_time ON audit_log (at);
