//! Adoption from an existing `.env` file: `import-env` sets one service's
//! configuration from the variables its schema maps (`x-service-env`, else
//! the key upper-cased), so an installation that configured its services by
//! environment moves to the manager without changing a value.
//!
//! - The text is parsed with `dotenvy` from memory (the process environment
//!   is neither read nor changed). dotenvy expands `$NAME`/`${NAME}` from
//!   the *process* environment first, which here is the manager's own (keys,
//!   tokens): a mapped variable whose value uses substitution is refused
//!   (422 naming it) instead of importing something of the manager's. Single
//!   quotes (`'...'`) keep a `$` literal.
//! - Each value is converted by the field's JSON type the way the TARS code
//!   parses it: integers and numbers as Python's `int()`/`float()` read them
//!   (finite numbers only), booleans `1/true/yes/on` and `0/false/no/off`,
//!   lists comma-separated, an empty value `null` for a nullable field.
//! - Every value is validated through the normal write path first; any
//!   failure is a 422 whose messages name the **variable**, and nothing is
//!   written. Messages never contain a value.
//! - The outcome lists the changes (secrets only as `"changed"`: a dry run
//!   never compares a secret with the stored one, so it cannot be used to
//!   guess it), the fields already equal, the variables the schema does not
//!   map (`ignored`) and those skipped with a reason (`skipped`: an alias
//!   shadowed by the primary name, an empty secret).
//! - Applying writes one new version through [`Manager::put`] (change type
//!   `import`: history, audit, encryption of secrets as every write); every
//!   call, dry run or not, is also audited as `config.import_env` with the
//!   variable names only.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Map, Number, Value};

use super::{Manager, ManagerError, PutRequest, Result, SecretView};
use crate::audit::{AuditAction, AuditOutcome};
use crate::change_type::ChangeType;
use crate::domain::ServiceName;
use crate::schema::{valid_service_env_var, FieldError, FieldMeta};

/// Largest accepted `.env` text (bytes): a real one is a few KiB.
pub const MAX_DOTENV_BYTES: usize = 256 * 1024;

/// Most variables one `.env` text may define.
pub const MAX_DOTENV_VARIABLES: usize = 4096;

/// Longest variable name shown back in `ignored` (longer ones are cut).
const MAX_SHOWN_NAME: usize = 128;

/// An `import-env` request.
#[derive(Debug, Clone)]
pub struct EnvImportRequest {
    /// The `.env` text.
    pub text: String,
    /// Validate and report; write nothing.
    pub dry_run: bool,
    /// Optimistic lock for the write; `None`: the version current now.
    pub expected_version: Option<i64>,
    pub actor: String,
    pub reason: Option<String>,
}

/// One field the import sets to a different value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnvImportChange {
    pub field: String,
    /// The variable the value came from.
    pub variable: String,
    pub secret: bool,
    /// The current value (absent for secrets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<Value>,
    /// The imported value (absent for secrets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<Value>,
    /// `"changed"`; for a secret it says only that the file sets it.
    pub change: &'static str,
}

/// A mapped variable that was not imported, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnvImportSkip {
    pub variable: String,
    pub field: String,
    pub reason: String,
}

/// What an import found and did.
#[derive(Debug, Clone, Serialize)]
pub struct EnvImportOutcome {
    pub service: ServiceName,
    pub dry_run: bool,
    /// Whether a new version was stored.
    pub written: bool,
    /// The version after the import (the current one for a dry run).
    pub version: i64,
    pub changes: Vec<EnvImportChange>,
    /// Fields the file sets to the value they already have.
    pub unchanged: Vec<String>,
    /// Variables no field of the schema maps, by name, sorted.
    pub ignored: Vec<String>,
    pub skipped: Vec<EnvImportSkip>,
}

impl Manager {
    /// Imports a `.env` text into `service` (see the module docs).
    pub fn import_env(
        &self,
        service: &ServiceName,
        req: EnvImportRequest,
    ) -> Result<EnvImportOutcome> {
        let dry_run = req.dry_run;
        let actor = req.actor.clone();
        let result = self.import_env_unaudited(service, req);
        let (outcome, detail) = match &result {
            Ok(o) => (
                AuditOutcome::Ok,
                serde_json::json!({
                    "dry_run": dry_run,
                    "written": o.written,
                    "version": o.version,
                    "variables": o.changes.iter().map(|c| c.variable.as_str()).collect::<Vec<_>>(),
                    "ignored": o.ignored.len(),
                }),
            ),
            Err(_) => (
                AuditOutcome::Refused,
                serde_json::json!({ "dry_run": dry_run }),
            ),
        };
        self.store.record_audit(&crate::store::NewAudit {
            actor,
            action: AuditAction::ConfigImportEnv,
            target: Some(service.to_string()),
            outcome,
            detail: Some(detail),
        })?;
        result
    }

    fn import_env_unaudited(
        &self,
        service: &ServiceName,
        req: EnvImportRequest,
    ) -> Result<EnvImportOutcome> {
        if req.text.len() > MAX_DOTENV_BYTES {
            return Err(ManagerError::BadRequest(format!(
                "the .env text is larger than {MAX_DOTENV_BYTES} bytes"
            )));
        }
        let Some(schema) = self.schemas.get(service.as_str()) else {
            return Err(ManagerError::UnknownService(service.to_string()));
        };
        let vars = parse_dotenv(&req.text)?;
        let substituted = substituting_keys(&req.text);
        let view = schema.view();

        // Variable -> (field position, rank among that field's names).
        let mut owner: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        let fields: Vec<(&FieldMeta, &[String])> = view.typed_fields().collect();
        for (i, (meta, _)) in fields.iter().enumerate() {
            for (rank, name) in meta.service_env_names().into_iter().enumerate() {
                owner.entry(name).or_insert((i, rank));
            }
        }

        let mut chosen: BTreeMap<usize, (usize, String)> = BTreeMap::new();
        let mut ignored = BTreeSet::new();
        for name in vars.keys() {
            match owner.get(name) {
                None => {
                    ignored.insert(shown_name(name));
                }
                Some(&(i, rank)) => {
                    let better = chosen.get(&i).is_none_or(|(r, _)| rank < *r);
                    if better {
                        chosen.insert(i, (rank, name.clone()));
                    }
                }
            }
        }

        let mut skipped = Vec::new();
        let mut errors = Vec::new();
        let mut patch = Map::new();
        let mut used: Vec<(usize, String)> = Vec::new();
        for (&i, (_, variable)) in &chosen {
            let (meta, types) = fields[i];
            for other in meta.service_env_names() {
                if other != *variable && vars.contains_key(&other) {
                    skipped.push(EnvImportSkip {
                        variable: other,
                        field: meta.key.clone(),
                        reason: format!("{variable} is also set and the service reads it first"),
                    });
                }
            }
            let Some(raw) = vars.get(variable) else {
                continue;
            };
            if substituted.contains(variable) {
                errors.push(FieldError::new(
                    format!("/{}", meta.key),
                    format!(
                        "{variable}: uses $-substitution, which import-env does not expand; write the value out (or single-quote it)"
                    ),
                ));
                continue;
            }
            if meta.is_secret && raw.trim().is_empty() {
                skipped.push(EnvImportSkip {
                    variable: variable.clone(),
                    field: meta.key.clone(),
                    reason: "empty secret: the stored secret is kept".into(),
                });
                continue;
            }
            match convert(meta, types, raw) {
                Ok(value) => {
                    patch.insert(meta.key.clone(), value);
                    used.push((i, variable.clone()));
                }
                Err(why) => errors.push(FieldError::new(
                    format!("/{}", meta.key),
                    format!("{variable} {why}"),
                )),
            }
        }

        let current = self.get_effective(service, SecretView::Masked, false)?;
        let expected = req.expected_version.unwrap_or(current.version);
        let put = PutRequest {
            config: patch.clone(),
            expected_version: Some(expected),
            merge: true,
            actor: req.actor,
            reason: req.reason,
            change_type: ChangeType::Import,
        };
        // The normal write path validates everything; its field errors are
        // renamed to the variables they came from.
        let variable_of = |pointer: &str| -> Option<String> {
            let key = pointer.trim_start_matches('/').split('/').next()?;
            used.iter()
                .find(|(i, _)| fields[*i].0.key == key)
                .map(|(_, v)| v.clone())
        };
        let rename = |e: ManagerError| match e {
            ManagerError::Validation(errors) => ManagerError::Validation(
                errors
                    .into_iter()
                    .map(|e| match variable_of(&e.pointer) {
                        Some(var) => FieldError::new(e.pointer, format!("{var}: {}", e.message)),
                        None => e,
                    })
                    .collect(),
            ),
            other => other,
        };

        if !errors.is_empty() {
            // Report the rule failures of the readable values in the same
            // answer, so the operator fixes the file in one round.
            if let Err(ManagerError::Validation(more)) =
                self.prepare_write(service, put).map_err(rename)
            {
                errors.extend(more);
            }
            return Err(ManagerError::Validation(errors));
        }

        let mut changes = Vec::new();
        let mut unchanged = Vec::new();
        for (i, variable) in &used {
            let meta = fields[*i].0;
            let Some(new) = patch.get(&meta.key) else {
                continue;
            };
            if meta.is_secret {
                changes.push(EnvImportChange {
                    field: meta.key.clone(),
                    variable: variable.clone(),
                    secret: true,
                    old: None,
                    new: None,
                    change: "changed",
                });
                continue;
            }
            let old = current
                .config
                .get(&meta.key)
                .cloned()
                .unwrap_or(Value::Null);
            if same_value(&old, new) {
                unchanged.push(meta.key.clone());
            } else {
                changes.push(EnvImportChange {
                    field: meta.key.clone(),
                    variable: variable.clone(),
                    secret: false,
                    old: Some(old),
                    new: Some(new.clone()),
                    change: "changed",
                });
            }
        }

        let (written, version) = if req.dry_run || changes.is_empty() {
            self.prepare_write(service, put).map_err(rename)?;
            (false, current.version)
        } else {
            let outcome = self.put(service, put).map_err(rename)?;
            (outcome.changed, outcome.stored.version)
        };
        Ok(EnvImportOutcome {
            service: service.clone(),
            dry_run: req.dry_run,
            written,
            version,
            changes,
            unchanged,
            ignored: ignored.into_iter().collect(),
            skipped,
        })
    }
}

/// The variables of a `.env` text (the last definition of a name wins, as in
/// shells and compose). Errors name the line, never its content.
pub fn parse_dotenv(text: &str) -> Result<BTreeMap<String, String>> {
    let mut vars = BTreeMap::new();
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        match item {
            Ok((key, value)) => {
                vars.insert(key, value);
                if vars.len() > MAX_DOTENV_VARIABLES {
                    return Err(ManagerError::BadRequest(format!(
                        "the .env text defines more than {MAX_DOTENV_VARIABLES} variables"
                    )));
                }
            }
            Err(dotenvy::Error::LineParse(line, _)) => {
                let first = line.lines().next().unwrap_or("");
                let at = text
                    .lines()
                    .position(|l| !first.is_empty() && l.trim_end() == first.trim_end())
                    .map_or_else(String::new, |n| format!(" on line {}", n.saturating_add(1)));
                return Err(ManagerError::BadRequest(format!(
                    "the .env text is not valid dotenv syntax{at} (expected NAME=value; quote values with spaces or special characters)"
                )));
            }
            Err(_) => {
                return Err(ManagerError::BadRequest(
                    "the .env text cannot be read".into(),
                ))
            }
        }
    }
    Ok(vars)
}

/// Names whose value contains a `$` that dotenvy would expand (outside
/// single quotes, not escaped). Errs on the side of finding one: a false
/// positive only refuses a value with a clear message.
fn substituting_keys(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut key = String::new();
    // The quote a value left open at the end of a line.
    let mut open: Option<char> = None;
    for line in text.lines() {
        let value = match open {
            Some(_) => line,
            None => {
                let t = line.trim_start();
                if t.is_empty() || t.starts_with('#') {
                    continue;
                }
                let t = t.strip_prefix("export ").unwrap_or(t);
                let Some((k, v)) = t.split_once('=') else {
                    continue;
                };
                key = k.trim().to_owned();
                v
            }
        };
        let mut chars = value.chars().peekable();
        let mut escaped = false;
        let mut prev_space = open.is_none();
        while let Some(c) = chars.next() {
            if escaped {
                escaped = false;
                prev_space = false;
                continue;
            }
            match (open, c) {
                (Some('\''), '\'') => open = None,
                (Some('\''), _) => {}
                (_, '\\') => escaped = true,
                (Some('"'), '"') => open = None,
                (None, '\'' | '"') => open = Some(c),
                (None, '#') if prev_space => break,
                (_, '$')
                    if chars
                        .peek()
                        .is_some_and(|n| *n == '{' || n.is_ascii_alphanumeric() || *n == '_') =>
                {
                    found.insert(key.clone());
                }
                _ => {}
            }
            prev_space = c.is_whitespace();
        }
    }
    found
}

/// `raw` as the field's JSON type, read the way the TARS services read
/// environment values. The error says what was expected, never the value.
fn convert(meta: &FieldMeta, types: &[String], raw: &str) -> std::result::Result<Value, String> {
    let trimmed = raw.trim();
    if meta.nullable && trimmed.is_empty() {
        return Ok(Value::Null);
    }
    if types.is_empty() {
        // An enum without a type: the text itself.
        return Ok(Value::String(raw.to_owned()));
    }
    for ty in ["boolean", "integer", "number", "array", "object", "string"] {
        if !types.iter().any(|t| t == ty) {
            continue;
        }
        let parsed = match ty {
            "boolean" => match trimmed.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Some(Value::Bool(true)),
                "0" | "false" | "no" | "off" => Some(Value::Bool(false)),
                _ => None,
            },
            "integer" => trimmed
                .parse::<i64>()
                .map(Value::from)
                .or_else(|_| trimmed.parse::<u64>().map(Value::from))
                .ok(),
            "number" => trimmed
                .parse::<f64>()
                .ok()
                .and_then(Number::from_f64)
                .map(Value::Number),
            "array" => Some(Value::Array(
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.to_owned()))
                    .collect(),
            )),
            "object" => serde_json::from_str::<Value>(trimmed)
                .ok()
                .filter(Value::is_object),
            _ => Some(Value::String(raw.to_owned())),
        };
        if let Some(value) = parsed {
            return Ok(value);
        }
    }
    let expected = match types.first().map(String::as_str) {
        Some("boolean") => "a boolean (1/0, true/false, yes/no, on/off)".to_owned(),
        Some("integer") => "a whole number".to_owned(),
        Some("number") => "a finite number".to_owned(),
        _ => types.join(" or "),
    };
    if trimmed.is_empty() {
        Err(format!("is empty; expected {expected}"))
    } else {
        Err(format!("cannot be read as {expected}"))
    }
}

/// Equal as configuration values (`5` and `5.0` are the same number).
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// A name from the file as shown back: cut to [`MAX_SHOWN_NAME`] characters,
/// and only names a shell could read shown as they are.
fn shown_name(name: &str) -> String {
    if valid_service_env_var(name) {
        name.to_owned()
    } else {
        let cut: String = name
            .chars()
            .take(MAX_SHOWN_NAME)
            .map(|c| if c.is_ascii_graphic() { c } else { '?' })
            .collect();
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitution_is_found_outside_single_quotes() {
        let text = "A=$HOME\nB='$HOME'\nC=\"${X}\"\nD=\\$HOME\nE=cost # $5 note\nF=\"multi\n$LINE\"\nG=plain\nexport H=${Y}\nI=5$\n";
        let found = substituting_keys(text);
        assert_eq!(found.into_iter().collect::<Vec<_>>(), ["A", "C", "F", "H"]);
    }

    #[test]
    fn dotenv_errors_name_the_line_not_the_content() {
        let err = parse_dotenv("A=1\nB='secret-unclosed\n")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("secret"), "{err}");
        let err = parse_dotenv("A=1\nthis is not dotenv hunter2\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let many: String = (0..=MAX_DOTENV_VARIABLES)
            .map(|i| format!("V{i}=1\n"))
            .collect();
        assert!(parse_dotenv(&many).is_err());
        let vars = parse_dotenv("# c\nexport A=1\nA=2\nB=\"x y\"\n").unwrap();
        assert_eq!(vars["A"], "2");
        assert_eq!(vars["B"], "x y");
    }
}

#[cfg(test)]
mod manager_tests;
