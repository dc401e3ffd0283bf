//! Adoption from an existing `.env` file: `import-env` sets one service's
//! configuration from the variables its schema maps (`x-service-env`, else
//! the key upper-cased), so an installation that configured its services by
//! environment moves to the manager without changing a value.
//!
//! - The text is parsed with Docker Compose's `env_file` rules (the TARS
//!   `.env` is written for them: unquoted values with spaces, inline
//!   comments), from memory: the process environment is neither read nor
//!   changed. Compose would expand `$NAME`/`${NAME}` in unquoted and
//!   double-quoted values; import-env cannot know those values, so a mapped
//!   variable whose value uses substitution is refused (422 naming it).
//!   Single quotes (`'...'`) and `$$` keep a `$` literal.
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
use serde_json::{Map, Value};

use super::{Manager, ManagerError, PutRequest, Result, SecretView};
use crate::audit::{AuditAction, AuditOutcome};
use crate::change_type::ChangeType;
use crate::domain::{ServiceName, Version};
use crate::schema::{parse_integer, parse_number, valid_service_env_var, FieldError, FieldMeta};

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
    pub expected_version: Option<Version>,
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
    pub version: Version,
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
        let parsed = parse_env_file(&req.text)?;
        let substituted: BTreeSet<String> = parsed
            .iter()
            .filter(|(_, v)| v.substitutes)
            .map(|(k, _)| k.clone())
            .collect();
        let vars: BTreeMap<String, String> =
            parsed.into_iter().map(|(k, v)| (k, v.value)).collect();
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
    Ok(parse_env_file(text)?
        .into_iter()
        .map(|(k, v)| (k, v.value))
        .collect())
}

/// One value of a `.env` text.
#[derive(Debug, Clone, PartialEq, Eq)]
struct EnvFileValue {
    value: String,
    /// The value (unquoted or double-quoted) holds a `$NAME`/`${NAME}` that
    /// compose would expand; import-env does not expand it.
    substitutes: bool,
}

/// Parses a `.env` text with Docker Compose's `env_file` rules, the format
/// the TARS `.env` is written for (its compose file passes it to every
/// container): `NAME=value` lines, optional `export `, `#` comment lines;
/// an unquoted value runs to the end of the line (spaces included, no
/// escapes, an inline comment starts at a whitespace-preceded `#`, trailing
/// whitespace dropped); `'...'` is literal; `"..."` knows `\n \r \t \\ \" \$`;
/// both quotes may span lines. A line holding only a name (compose takes
/// it from the shell) sets nothing. Nothing is expanded: values that
/// would be are marked instead. The process environment is neither read
/// nor changed.
fn parse_env_file(text: &str) -> Result<BTreeMap<String, EnvFileValue>> {
    let bad = |line: usize| {
        ManagerError::BadRequest(format!(
            "the .env text is not valid dotenv syntax on line {line} (expected NAME=value; a quoted value must be closed and followed by nothing but a comment)"
        ))
    };
    let mut vars = BTreeMap::new();
    let lines: Vec<&str> = text.split('\n').collect();
    let mut i = 0;
    while i < lines.len() {
        let number = i.saturating_add(1);
        let line = lines[i].strip_suffix('\r').unwrap_or(lines[i]);
        i = i.saturating_add(1);
        let t = line.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let t = t.strip_prefix("export ").map_or(t, str::trim_start);
        let (key, rest) = match t.split_once('=') {
            Some((k, v)) => (k.trim_end(), Some(v.trim_start())),
            None => (t.trim_end(), None),
        };
        let key_ok = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !key_ok {
            return Err(bad(number));
        }
        let Some(rest) = rest else {
            continue;
        };
        let parsed = match rest.chars().next() {
            Some(q @ ('\'' | '"')) => {
                // The quoted text may continue on the following lines.
                let mut body = rest[1..].to_owned();
                loop {
                    if let Some((value, tail)) = close_quote(&body, q) {
                        let tail = tail.trim_start();
                        if !(tail.is_empty() || tail.starts_with('#')) {
                            return Err(bad(number));
                        }
                        break value;
                    }
                    let Some(next) = lines.get(i) else {
                        return Err(bad(number));
                    };
                    body.push('\n');
                    body.push_str(next.strip_suffix('\r').unwrap_or(next));
                    i = i.saturating_add(1);
                }
            }
            _ => {
                let mut end = rest.len();
                let mut prev_space = false;
                for (at, c) in rest.char_indices() {
                    if c == '#' && prev_space {
                        end = at;
                        break;
                    }
                    prev_space = c.is_whitespace();
                }
                unquoted_value(rest[..end].trim_end())
            }
        };
        vars.insert(key.to_owned(), parsed);
        if vars.len() > MAX_DOTENV_VARIABLES {
            return Err(ManagerError::BadRequest(format!(
                "the .env text defines more than {MAX_DOTENV_VARIABLES} variables"
            )));
        }
    }
    Ok(vars)
}

/// The value of a quoted text whose opening quote `q` is already consumed,
/// and what follows the closing quote; `None` while it is not closed.
fn close_quote(body: &str, q: char) -> Option<(EnvFileValue, &str)> {
    if q == '\'' {
        let (value, tail) = body.split_once('\'')?;
        return Some((
            EnvFileValue {
                value: value.to_owned(),
                substitutes: false,
            },
            tail,
        ));
    }
    let mut value = String::new();
    let mut substitutes = false;
    let mut chars = body.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => {
                return Some((
                    EnvFileValue { value, substitutes },
                    &body[at.saturating_add(1)..],
                ));
            }
            '\\' => match chars.next() {
                Some((_, 'n')) => value.push('\n'),
                Some((_, 'r')) => value.push('\r'),
                Some((_, 't')) => value.push('\t'),
                Some((_, e @ ('\\' | '"' | '$'))) => value.push(e),
                Some((_, other)) => {
                    value.push('\\');
                    value.push(other);
                }
                None => value.push('\\'),
            },
            '$' => {
                match chars.peek() {
                    Some((_, '$')) => {
                        // `$$` is compose's literal `$`.
                        chars.next();
                    }
                    Some((_, n)) if starts_substitution(*n) => substitutes = true,
                    _ => {}
                }
                value.push('$');
            }
            other => value.push(other),
        }
    }
    None
}

/// Whether `c` after a `$` makes it a substitution (`${...}`, `$NAME`).
fn starts_substitution(c: char) -> bool {
    c == '{' || c == '_' || c.is_ascii_alphanumeric()
}

/// An unquoted value: `$$` is a literal `$`; any other `$NAME`/`${` marks
/// a substitution compose would expand.
fn unquoted_value(raw: &str) -> EnvFileValue {
    let mut value = String::with_capacity(raw.len());
    let mut substitutes = false;
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' {
            match chars.peek() {
                Some('$') => {
                    chars.next();
                }
                Some(n) if starts_substitution(*n) => substitutes = true,
                _ => {}
            }
        }
        value.push(c);
    }
    EnvFileValue { value, substitutes }
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
            "integer" => parse_integer(trimmed),
            "number" => parse_number(trimmed),
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

    fn substituting(text: &str) -> Vec<String> {
        parse_env_file(text)
            .unwrap()
            .into_iter()
            .filter(|(_, v)| v.substitutes)
            .map(|(k, _)| k)
            .collect()
    }

    #[test]
    fn substitution_is_found_outside_single_quotes() {
        let text = "A=$HOME\nB='$HOME'\nC=\"${X}\"\nD=$$HOME\nE=cost # $5 note\nF=\"multi\n$LINE\"\nG=plain\nexport H=${Y}\nI=5$\nJ=\"\\$HOME\"\n";
        assert_eq!(substituting(text), ["A", "C", "F", "H"]);
        let vars = parse_dotenv(text).unwrap();
        assert_eq!(vars["D"], "$HOME");
        assert_eq!(vars["E"], "cost");
        assert_eq!(vars["F"], "multi\n$LINE");
        assert_eq!(vars["J"], "$HOME");
    }

    /// The lines of a stock TARS `.env` (compose `env_file` syntax) read as
    /// compose passes them to the container.
    #[test]
    fn compose_env_file_syntax_as_the_tars_env_uses_it() {
        let text = "# comment\n\
            ONLINE_ANNOUNCE_TEXT=System online.\n\
            ROUTER_WAKE_ACK_CHOICES=Hmm?|Huh?|Yes?\n\
            COUGH_SUSPICIOUS_PHRASES=thank you,hello,okay,hi\n\
            RAG_PROMPT_TEMPLATE=Hello:\\n{a}\\n\\nB: {b}\n\
            ROUTER_WAKE_REPROMPT_TEXT=\n\
            LLM_MODEL=gpt-4o-mini   # the model\n\
            TAB=a\t#b\n\
            HASH=a#b\n\
            SPACED = padded value  \n\
            CRLF=x\r\n\
            DQ=\"a\\tb\\\"c\\nd\"  # note\n\
            SQ='a\\nb # not a comment'\n\
            ML='line1\nline2'\n\
            ONLY_A_NAME\n\
            dotted.name-1=ok\n";
        let vars = parse_dotenv(text).unwrap();
        assert_eq!(vars["ONLINE_ANNOUNCE_TEXT"], "System online.");
        assert_eq!(vars["ROUTER_WAKE_ACK_CHOICES"], "Hmm?|Huh?|Yes?");
        assert_eq!(vars["COUGH_SUSPICIOUS_PHRASES"], "thank you,hello,okay,hi");
        // Unquoted: no escapes, the backslash stays.
        assert_eq!(vars["RAG_PROMPT_TEMPLATE"], "Hello:\\n{a}\\n\\nB: {b}");
        assert_eq!(vars["ROUTER_WAKE_REPROMPT_TEXT"], "");
        assert_eq!(vars["LLM_MODEL"], "gpt-4o-mini");
        assert_eq!(vars["TAB"], "a");
        assert_eq!(vars["HASH"], "a#b");
        assert_eq!(vars["SPACED"], "padded value");
        assert_eq!(vars["CRLF"], "x");
        assert_eq!(vars["DQ"], "a\tb\"c\nd");
        assert_eq!(vars["SQ"], "a\\nb # not a comment");
        assert_eq!(vars["ML"], "line1\nline2");
        assert!(!vars.contains_key("ONLY_A_NAME"));
        assert_eq!(vars["dotted.name-1"], "ok");
        assert_eq!(vars.len(), 14);
    }

    #[test]
    fn bad_env_file_lines_name_the_line() {
        for (text, line) in [
            ("A=1\nB='secret-unclosed\n", 2),
            ("A=\"x\" trailing-secret\n", 1),
            ("A=1\n\nthis is not dotenv hunter2\n", 3),
            ("=value-secret\n", 1),
            ("A B=secret\n", 1),
            ("A=\"unclosed\\\"\n", 1),
        ] {
            let err = parse_dotenv(text).unwrap_err().to_string();
            assert!(err.contains(&format!("line {line}")), "{text:?}: {err}");
            assert!(!err.contains("secret") && !err.contains("hunter2"), "{err}");
        }
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
