//! The SQLite store (WIP).
