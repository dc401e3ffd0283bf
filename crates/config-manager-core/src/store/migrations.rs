//! Versioned schema migrations, tracked in `PRAGMA user_version`.
//!
//! Each migration is an embedded SQL file applied in one transaction, so a crash
//! mid-migration leaves the previous version intact. A database from a newer
//! binary (higher `user_version`) is refused instead of being half-understood.

use rusqlite::Connection;

use super::{Result, StoreError};

/// The migrations in order; index + 1 is the version each one produces.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_service_schemas.sql"),
    include_str!("migrations/0003_history_service_order.sql"),
    include_str!("migrations/0004_applied_state.sql"),
];

/// The schema version this binary writes.
pub const LATEST_MIGRATION: i64 = MIGRATIONS.len() as i64;

/// Applies every migration newer than the database's `user_version`.
pub(super) fn apply(conn: &mut Connection) -> Result<()> {
    let current = user_version(conn)?;
    if current > LATEST_MIGRATION {
        return Err(newer_than_binary(current));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

/// Fails unless the database is exactly at [`LATEST_MIGRATION`].
pub(super) fn check(conn: &Connection) -> Result<()> {
    let current = user_version(conn)?;
    match current.cmp(&LATEST_MIGRATION) {
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Greater => Err(newer_than_binary(current)),
        std::cmp::Ordering::Less => Err(StoreError::SchemaMismatch(format!(
            "database schema version {current} is older than {LATEST_MIGRATION}; restart to migrate"
        ))),
    }
}

fn user_version(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
}

fn newer_than_binary(found: i64) -> StoreError {
    StoreError::SchemaMismatch(format!(
        "database schema version {found} is newer than this binary supports ({LATEST_MIGRATION})"
    ))
}
