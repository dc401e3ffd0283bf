//! The query builder of the paged, newest-first listings (history, audit):
//! optional filters become `AND column <op> ?` clauses with bound values —
//! user text never enters the SQL string — then keyset paging by id.

use rusqlite::types::Value as SqlValue;

use super::audit::escape_like;

/// A `SELECT ... WHERE 1=1` being narrowed.
pub(super) struct Filtered {
    sql: String,
    args: Vec<SqlValue>,
}

impl Filtered {
    /// `select` must end in `WHERE 1=1` (clauses are appended with `AND`).
    pub(super) fn new(select: &str) -> Self {
        Self {
            sql: select.to_owned(),
            args: Vec::new(),
        }
    }

    fn add(&mut self, clause: &str, v: SqlValue) {
        self.sql.push_str(clause);
        self.args.push(v);
    }

    /// `AND <clause>` with `value` bound, when there is a value.
    pub(super) fn text(&mut self, clause: &str, value: Option<&str>) -> &mut Self {
        if let Some(v) = value {
            self.add(clause, SqlValue::Text(v.to_owned()));
        }
        self
    }

    /// `AND <clause>` with `value` bound, when there is a value.
    pub(super) fn integer(&mut self, clause: &str, value: Option<i64>) -> &mut Self {
        if let Some(v) = value {
            self.add(clause, SqlValue::Integer(v));
        }
        self
    }

    /// `AND <column> LIKE 'prefix%'`, the prefix matched literally.
    pub(super) fn prefix(&mut self, column: &str, value: Option<&String>) -> &mut Self {
        if let Some(v) = value {
            self.add(
                &format!(" AND {column} LIKE ? ESCAPE '\\'"),
                SqlValue::Text(format!("{}%", escape_like(v))),
            );
        }
        self
    }

    /// Newest first, at most `limit` rows: the SQL and its arguments.
    pub(super) fn newest_first(mut self, limit: u32) -> (String, Vec<SqlValue>) {
        self.add(
            " ORDER BY id DESC LIMIT ?",
            SqlValue::Integer(i64::from(limit)),
        );
        (self.sql, self.args)
    }
}
