-- Service schemas registered over the API. They are part of the database (and
-- so of its backups) and are laid over the built-in and directory schemas.
CREATE TABLE service_schemas (
    service        TEXT PRIMARY KEY,
    document       TEXT NOT NULL,
    registered_at  TEXT NOT NULL,
    registered_by  TEXT NOT NULL
);
