//! [`EnvSource`]: the variables as read (the `.env` file under the process
//! environment), looked up only through the settings table, with readers
//! that take a setting's default, range and unit from its entry. Every error
//! names the variable and never echoes its value.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use thiserror::Error;

use super::backup::GoDuration;
use super::table::{DefaultValue, Kind, Setting, Unit, CONFIG_ENV_FILE};

/// A setting that is present but unusable.
#[derive(Debug, Error)]
#[error("{var}: {reason}")]
pub struct SettingsError {
    pub var: &'static str,
    pub reason: String,
}

/// The error of `var` (shared by every settings parser).
pub(crate) fn bad(var: &'static str, reason: impl Into<String>) -> SettingsError {
    SettingsError {
        var,
        reason: reason.into(),
    }
}

/// A reader used on a setting of another kind: a mistake in this crate,
/// caught by the tests that run every parser, reported rather than panicking.
fn misuse(s: &Setting, reader: &str) -> SettingsError {
    bad(
        s.name,
        format!("internal error: read as {reader}, which its settings table entry is not"),
    )
}

/// The variables the service reads: the process environment wins over the
/// `.env` file, which fills in what the environment does not set.
#[derive(Clone, Default)]
pub struct EnvSource {
    vars: BTreeMap<String, String>,
    /// Every name looked up, so a test can show that each setting of the
    /// table has a reader.
    looked_up: Arc<Mutex<BTreeSet<&'static str>>>,
    /// Deprecated names that were used: `(old, new)`.
    deprecated: Arc<Mutex<BTreeSet<(&'static str, &'static str)>>>,
}

impl std::fmt::Debug for EnvSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvSource")
            .field("vars", &self.vars.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl EnvSource {
    /// Reads `env_file` (if it exists) and lays the process environment over it.
    pub fn load(env_file: &Path) -> Result<Self, SettingsError> {
        let mut vars = BTreeMap::new();
        if env_file.exists() {
            read_file(env_file, &mut vars)?;
        }
        // An empty process variable does not hide a value from the file (a
        // compose file's `VAR=` would otherwise make first run generate a new
        // key on every start).
        vars.extend(std::env::vars().filter(|(_, v)| !v.trim().is_empty()));
        Ok(Self::from_pairs(vars))
    }

    /// Reads `env_file` alone, without the process environment (commands
    /// that edit the file, like `keys rotate-master`). A missing file is an
    /// error.
    pub fn load_file_only(env_file: &Path) -> Result<Self, SettingsError> {
        let mut vars = BTreeMap::new();
        read_file(env_file, &mut vars)?;
        Ok(Self::from_pairs(vars))
    }

    /// Builds a source from explicit pairs (tests).
    pub fn from_pairs<I: IntoIterator<Item = (String, String)>>(pairs: I) -> Self {
        Self {
            vars: pairs.into_iter().collect(),
            ..Self::default()
        }
    }

    /// [`EnvSource::from_pairs`] of borrowed pairs, for the unit tests.
    #[cfg(test)]
    pub(crate) fn of(pairs: &[(&str, &str)]) -> Self {
        Self::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    /// A value by name; empty values count as unset.
    fn lookup(&self, name: &'static str) -> Option<&str> {
        self.looked_up
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name);
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    /// A setting's value as given; empty values count as unset.
    pub fn get(&self, s: &'static Setting) -> Option<&str> {
        self.lookup(s.name)
    }

    /// Sets a value (first-run generation).
    pub fn set(&mut self, s: &'static Setting, value: String) {
        self.vars.insert(s.name.to_owned(), value);
    }

    /// A setting that must be set.
    pub fn required(&self, s: &'static Setting) -> Result<&str, SettingsError> {
        self.get(s).ok_or_else(|| bad(s.name, "is not set"))
    }

    /// The value, or the table's text default (paths, names).
    pub fn text(&self, s: &'static Setting) -> Option<&str> {
        self.get(s).or(match s.default {
            DefaultValue::Text(d) => Some(d),
            _ => None,
        })
    }

    /// A value parsed with `FromStr` (an address, say), or the table's text
    /// default parsed the same way. The error describes the form from the
    /// table.
    pub fn parsed<T: std::str::FromStr>(&self, s: &'static Setting) -> Result<T, SettingsError> {
        let form = match s.kind {
            Kind::Text(form) => form,
            _ => return Err(misuse(s, "text")),
        };
        let value = self
            .text(s)
            .ok_or_else(|| misuse(s, "text with a default"))?;
        value
            .trim()
            .parse()
            .map_err(|_| bad(s.name, format!("must be {form}")))
    }

    /// A 0/1 (false/true, no/yes) setting with the table's default.
    pub fn flag(&self, s: &'static Setting) -> Result<bool, SettingsError> {
        match s.default {
            DefaultValue::Int(d) => self.flag_or(s, d == 1),
            _ => Err(misuse(s, "a flag with a default")),
        }
    }

    /// A 0/1 setting whose default depends on other settings (the table
    /// describes it).
    pub fn flag_or(&self, s: &'static Setting, default: bool) -> Result<bool, SettingsError> {
        if s.kind != Kind::Flag {
            return Err(misuse(s, "a flag"));
        }
        match self.get(s).map(str::trim) {
            None => Ok(default),
            Some("0") | Some("false") | Some("no") => Ok(false),
            Some("1") | Some("true") | Some("yes") => Ok(true),
            Some(_) => Err(bad(s.name, "must be 0 or 1")),
        }
    }

    /// A whole-number setting within its table range, or its default. The
    /// error states the range and never echoes the value.
    pub fn int<T: TryFrom<u64>>(&self, s: &'static Setting) -> Result<T, SettingsError> {
        let (min, max) = match s.kind {
            Kind::Int { min, max, .. } => (min, max),
            _ => return Err(misuse(s, "a whole number")),
        };
        let value = match (self.get(s), s.default) {
            (Some(v), _) => v.trim().parse::<u64>().map_err(|_| {
                bad(
                    s.name,
                    format!("must be a whole number from {min} to {max}"),
                )
            })?,
            (None, DefaultValue::Int(d)) => d,
            (None, _) => return Err(misuse(s, "a whole number with a default")),
        };
        if value < min || value > max {
            return Err(bad(s.name, format!("must be between {min} and {max}")));
        }
        T::try_from(value).map_err(|_| bad(s.name, format!("must be between {min} and {max}")))
    }

    /// A duration setting: a whole number of the unit its name ends with
    /// (`_MS`, `_SECS`, `_DAYS`), within its range. While it is unset, its
    /// deprecated Go-duration alias is read instead (and remembered for
    /// [`EnvSource::deprecations`]); both set is an error.
    pub fn duration(&self, s: &'static Setting) -> Result<Duration, SettingsError> {
        let (min, max, unit) = match s.kind {
            Kind::Int { min, max, unit } if unit.suffix().is_some() => (min, max, unit),
            _ => return Err(misuse(s, "a duration")),
        };
        if let Some(old) = s.alias {
            if let Some(raw) = self.lookup(old) {
                if self.get(s).is_some() {
                    return Err(bad(
                        old,
                        format!("is the deprecated name of {}; set only {}", s.name, s.name),
                    ));
                }
                let min = in_unit(min, unit);
                let max = in_unit(max, unit);
                let value = go_duration(old, raw, min, max)?;
                self.deprecated
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert((old, s.name));
                return Ok(value.0);
            }
        }
        self.int::<u64>(s).map(|n| in_unit(n, unit))
    }

    /// One of Litestream's own durations, a Go duration string within the
    /// table's range, or its default.
    pub fn go_duration(&self, s: &'static Setting) -> Result<GoDuration, SettingsError> {
        let (min_ms, max_ms) = match s.kind {
            Kind::GoDuration { min_ms, max_ms } => (min_ms, max_ms),
            _ => return Err(misuse(s, "a Go duration")),
        };
        let raw = self
            .text(s)
            .ok_or_else(|| misuse(s, "a Go duration with a default"))?;
        go_duration(
            s.name,
            raw,
            Duration::from_millis(min_ms),
            Duration::from_millis(max_ms),
        )
    }

    /// One of the table's words, or its default word; `None` when unset
    /// without a default word.
    pub fn choice(&self, s: &'static Setting) -> Result<Option<&'static str>, SettingsError> {
        let Kind::Choice(words) = s.kind else {
            return Err(misuse(s, "a choice"));
        };
        match self.get(s).map(str::trim) {
            None => Ok(match s.default {
                DefaultValue::Text(d) => Some(d),
                _ => None,
            }),
            Some(v) => words
                .iter()
                .copied()
                .find(|w| *w == v)
                .map(Some)
                .ok_or_else(|| bad(s.name, format!("must be {}", one_of(words)))),
        }
    }

    /// One warning per deprecated name that was read, naming the new one.
    pub fn deprecations(&self) -> Vec<String> {
        self.deprecated
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(old, new)| {
                format!("{old} is deprecated: set {new} instead (see .env.example); {old} is still read while {new} is unset")
            })
            .collect()
    }

    /// The names looked up so far (tests: every setting has a reader).
    #[cfg(test)]
    pub(crate) fn looked_up(&self) -> BTreeSet<&'static str> {
        self.looked_up
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Adds the variables of `env_file` to `vars`. dotenvy errors quote the
/// offending line, which may hold a key: only the position is kept.
fn read_file(env_file: &Path, vars: &mut BTreeMap<String, String>) -> Result<(), SettingsError> {
    let iter = dotenvy::from_path_iter(env_file).map_err(|e| {
        bad(
            CONFIG_ENV_FILE.name,
            format!("cannot read {}: {e}", env_file.display()),
        )
    })?;
    for item in iter {
        let (k, v) = item.map_err(|e| {
            bad(
                CONFIG_ENV_FILE.name,
                format!(
                    "{} does not parse: {}",
                    env_file.display(),
                    redact_dotenv_error(&e)
                ),
            )
        })?;
        vars.insert(k, v);
    }
    Ok(())
}

fn redact_dotenv_error(e: &dotenvy::Error) -> String {
    match e {
        dotenvy::Error::LineParse(_, index) => format!("syntax error at character {index}"),
        dotenvy::Error::Io(io) => io.to_string(),
        _ => "invalid content".into(),
    }
}

/// `n` of `unit` as a duration.
fn in_unit(n: u64, unit: Unit) -> Duration {
    match unit {
        Unit::Milliseconds => Duration::from_millis(n),
        Unit::Days => Duration::from_secs(n.saturating_mul(86_400)),
        Unit::Seconds | Unit::Count | Unit::Bytes => Duration::from_secs(n),
    }
}

/// A Go duration string within `min..=max`; errors name `var`.
fn go_duration(
    var: &'static str,
    raw: &str,
    min: Duration,
    max: Duration,
) -> Result<GoDuration, SettingsError> {
    let value = GoDuration::parse(raw)
        .ok_or_else(|| bad(var, "is not a duration (use e.g. 500ms, 30s, 5m, 168h)"))?;
    if value.0 < min || value.0 > max {
        return Err(bad(
            var,
            format!(
                "must be between {} and {}",
                GoDuration(min).render(),
                GoDuration(max).render()
            ),
        ));
    }
    Ok(value)
}

/// `'a'`, `'a' or 'b'`, `'a', 'b' or 'c'`.
pub(crate) fn one_of(words: &[&str]) -> String {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        Some((last, _)) => last.clone(),
        None => String::new(),
    }
}
