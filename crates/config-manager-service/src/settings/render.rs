//! `.env.example` and the docs' settings tables, written from the settings
//! table ([`super::table`]). A test compares the files in the repository
//! with what these functions produce and fails on any difference;
//! `make settings-docs` (`UPDATE_SETTINGS_DOCS=1 cargo test -p
//! config-manager-service --lib settings::render`) rewrites them.
//!
//! In a Markdown file, the generated part lies between
//! `<!-- settings-table:begin -->` and `<!-- settings-table:end -->`
//! (every group, each under a `###` heading) or, with `group=<key>` in the
//! begin marker, one group's table alone.

use std::fmt::Write as _;

use super::backup::GoDuration;
use super::table::{DefaultValue, Group, Kind, Setting, Source, Unit, SETTINGS};

/// Width of `.env.example`'s comment lines.
const WIDTH: usize = 79;

const BEGIN: &str = "<!-- settings-table:begin";
const END: &str = "<!-- settings-table:end -->";

const ENV_HEADER: &str = "\
config-manager settings: every variable the binary reads, with its default. \
The process environment wins over this file. Keys marked \"Generated\" are \
created on first run and appended to the .env file (mode 0600) when missing; \
a key that is present but malformed stops the service with an error naming \
it.\n\
Durations are whole numbers in the unit their name ends with (_MS, _SECS, \
_DAYS); only Litestream's own LITESTREAM_SYNC_INTERVAL and \
LITESTREAM_RETENTION take Go duration strings (1s, 168h).\n\
Generated from crates/config-manager-service/src/settings/table.rs: change \
the table, then run `make settings-docs`.";

/// The unit as `.env.example` and the docs spell it ("" for a count).
fn unit_word(unit: Unit) -> &'static str {
    match unit {
        Unit::Count => "",
        Unit::Bytes => "bytes",
        Unit::Milliseconds => "milliseconds",
        Unit::Seconds => "seconds",
        Unit::Days => "days",
    }
}

fn go(ms: u64) -> String {
    GoDuration(std::time::Duration::from_millis(ms)).render()
}

/// The values a setting takes, in words.
fn range(s: &Setting) -> String {
    match s.kind {
        Kind::Text(form) => form.to_owned(),
        Kind::Flag => "0 or 1".to_owned(),
        Kind::Int { min, max, .. } => format!("{min}..{max}"),
        Kind::Choice(words) => words.join(", "),
        Kind::GoDuration { min_ms, max_ms } => {
            format!("{}..{} (Go duration)", go(min_ms), go(max_ms))
        }
    }
}

/// The value written after `NAME=` in `.env.example`: an example, else a
/// plain default, else nothing. A renamed setting shows none, so a copy of
/// the file never sets the new name beside an old one still in use.
fn example_value(s: &Setting) -> String {
    if let Some(example) = s.example {
        return example.to_owned();
    }
    if s.alias.is_some() {
        return String::new();
    }
    match s.default {
        DefaultValue::Text(t) => t.to_owned(),
        DefaultValue::Int(n) => n.to_string(),
        DefaultValue::None | DefaultValue::Generated | DefaultValue::Computed(_) => String::new(),
    }
}

/// The facts every setting states after its doc, as sentences.
fn facts(s: &Setting) -> Vec<String> {
    let mut out = Vec::new();
    match s.kind {
        Kind::Int { unit, .. } => {
            let unit = unit_word(unit);
            out.push(format!(
                "Range: {}{}{unit}.",
                range(s),
                if unit.is_empty() { "" } else { " " }
            ));
        }
        Kind::Text(_) => out.push(format!("Form: {}.", range(s))),
        _ => out.push(format!("Values: {}.", range(s))),
    }
    match (s.default, s.example) {
        (DefaultValue::Generated, _) => out.push("Generated on first run when missing.".into()),
        (DefaultValue::Computed(what), _) => out.push(format!("Default: {what}.")),
        (DefaultValue::None, Some(_)) => {
            out.push("Unset by default (the value is an example).".into())
        }
        (DefaultValue::Int(n), _) if s.alias.is_some() => out.push(format!("Default: {n}.")),
        _ => {}
    }
    if s.secret {
        out.push("Secret.".into());
    }
    if s.source == Source::Process {
        out.push("Read from the process environment only, not from this file.".into());
    }
    if let Some(old) = s.alias {
        out.push(format!(
            "Deprecated name, still read while this one is unset (with a warning at start-up): \
             {old}, a Go duration such as 30s or 1h."
        ));
    }
    out
}

/// `text` as `# ` comment lines of at most [`WIDTH`] characters: `\n` is a
/// hard break, and a line's leading spaces carry over to its wrapped rest.
fn comment(text: &str, out: &mut String) {
    for line in text.split('\n') {
        let indent = &line[..line.len() - line.trim_start().len()];
        let prefix = 2 + indent.len();
        let mut current = String::new();
        for word in line.split_whitespace() {
            if !current.is_empty() && prefix + current.len() + 1 + word.len() > WIDTH {
                let _ = writeln!(out, "# {indent}{current}");
                current.clear();
            }
            if !current.is_empty() {
                current.push(' ');
            }
            current.push_str(word);
        }
        if current.is_empty() {
            out.push_str("#\n");
        } else {
            let _ = writeln!(out, "# {indent}{current}");
        }
    }
}

/// The whole `.env.example`.
pub fn env_example() -> String {
    let mut out = String::new();
    comment(ENV_HEADER, &mut out);
    for group in Group::ALL {
        let title = format!("# --- {} ", group.title());
        let _ = writeln!(out, "\n{title:-<WIDTH$}");
        if !group.intro().is_empty() {
            comment(group.intro(), &mut out);
        }
        for s in SETTINGS.iter().filter(|s| s.group == group) {
            out.push('\n');
            comment(s.doc, &mut out);
            comment(&facts(s).join(" "), &mut out);
            let _ = writeln!(out, "{}={}", s.name, example_value(s));
        }
    }
    out
}

/// Text for a Markdown table cell: one line, `|` escaped, and outside code
/// spans `<`/`>` written as entities (so `<data dir>` shows) and `*`
/// escaped (so `CONFIG_*, LKG_*` is not emphasis).
fn cell(text: &str) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = String::with_capacity(joined.len());
    for (i, part) in joined.split('`').enumerate() {
        if i > 0 {
            out.push('`');
        }
        let part = part.replace('|', "\\|");
        if i % 2 == 0 {
            out.push_str(
                &part
                    .replace('<', "&lt;")
                    .replace('>', "&gt;")
                    .replace('*', "\\*"),
            );
        } else {
            out.push_str(&part);
        }
    }
    out
}

fn default_cell(s: &Setting) -> String {
    match s.default {
        DefaultValue::None => "unset".into(),
        DefaultValue::Generated => "generated".into(),
        DefaultValue::Text(t) => format!("`{t}`"),
        DefaultValue::Int(n) => format!("`{n}`"),
        DefaultValue::Computed(what) => cell(what),
    }
}

fn description_cell(s: &Setting) -> String {
    let mut text = cell(s.doc);
    if s.source == Source::Process {
        text.push_str(" Process environment only.");
    }
    if let Some(old) = s.alias {
        let _ = write!(
            text,
            " Deprecated name `{old}` (a Go duration) is still read while this one is unset, \
             with a warning."
        );
    }
    text
}

/// One group's table.
fn group_table(group: Group, out: &mut String) {
    out.push_str("| Variable | Default | Range | Unit | Secret | Description |\n");
    out.push_str("|---|---|---|---|---|---|\n");
    for s in SETTINGS.iter().filter(|s| s.group == group) {
        let unit = match s.kind {
            Kind::Int { unit, .. } => unit_word(unit),
            _ => "",
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} | {} |",
            s.name,
            default_cell(s),
            cell(&range(s)),
            unit,
            if s.secret { "yes" } else { "" },
            description_cell(s),
        );
    }
}

/// The Markdown between the markers: every group under a `###` heading
/// with its introduction, or one group's table alone.
pub fn markdown(only: Option<Group>) -> String {
    let mut out = String::new();
    match only {
        Some(group) => group_table(group, &mut out),
        None => {
            for group in Group::ALL {
                let _ = writeln!(out, "\n### {}\n", group.title());
                if !group.intro().is_empty() {
                    let _ = writeln!(out, "{}\n", cell(group.intro()));
                }
                group_table(group, &mut out);
            }
        }
    }
    out
}

/// Why a document's markers could not be filled in.
#[derive(Debug, PartialEq, Eq)]
pub struct MarkerError(pub String);

/// `doc` with the part between each pair of markers regenerated.
pub fn splice(doc: &str) -> Result<String, MarkerError> {
    let mut out = String::with_capacity(doc.len());
    let mut rest = doc;
    while let Some(start) = rest.find(BEGIN) {
        let line_end = rest[start..]
            .find('\n')
            .map(|i| start + i + 1)
            .ok_or_else(|| MarkerError("begin marker without a line end".into()))?;
        let marker = rest[start..line_end].trim_end();
        let only = match marker
            .trim_start_matches(BEGIN)
            .trim_end_matches("-->")
            .trim()
        {
            "" => None,
            arg => {
                let key = arg
                    .strip_prefix("group=")
                    .ok_or_else(|| MarkerError(format!("unknown marker argument {arg:?}")))?;
                Some(
                    Group::ALL
                        .into_iter()
                        .find(|g| g.key() == key)
                        .ok_or_else(|| MarkerError(format!("unknown group {key:?}")))?,
                )
            }
        };
        let end = rest[line_end..]
            .find(END)
            .map(|i| line_end + i)
            .ok_or_else(|| MarkerError(format!("{marker} has no {END}")))?;
        out.push_str(&rest[..line_end]);
        out.push_str(&markdown(only));
        rest = &rest[end..];
        // The end marker itself is kept by the next round or the tail.
        let after = END.len();
        out.push_str(&rest[..after]);
        rest = &rest[after..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The files generated from the table, relative to the workspace root,
    /// and whether the whole file is generated (else between markers).
    const FILES: &[(&str, bool)] = &[
        (".env.example", true),
        ("docs/operations.md", false),
        ("docs/backup.md", false),
    ];

    /// `.env.example` and the docs' settings tables are what the table
    /// gives. On a difference: `make settings-docs` (or
    /// `UPDATE_SETTINGS_DOCS=1 cargo test -p config-manager-service --lib
    /// settings::render`) rewrites them.
    #[test]
    fn files_match_the_settings_table() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let update = std::env::var_os("UPDATE_SETTINGS_DOCS").is_some_and(|v| v == "1");
        let mut stale = Vec::new();
        for (file, whole) in FILES {
            let path = root.join(file);
            let current = std::fs::read_to_string(&path).unwrap();
            let expected = if *whole {
                env_example()
            } else {
                assert!(
                    current.contains(BEGIN),
                    "{file} has no settings-table marker"
                );
                splice(&current).unwrap()
            };
            if current != expected {
                if update {
                    std::fs::write(&path, &expected).unwrap();
                } else {
                    stale.push(*file);
                }
            }
        }
        assert!(
            stale.is_empty(),
            "{stale:?} differ from the settings table (settings/table.rs); run `make settings-docs` \
             (UPDATE_SETTINGS_DOCS=1 cargo test -p config-manager-service --lib settings::render)"
        );
    }

    /// `.env.example` lists every setting once, as `NAME=value`, and
    /// nothing else (the deprecated names only in comments).
    #[test]
    fn env_example_lists_every_setting_once() {
        let text = env_example();
        let assigned: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#') && l.contains('='))
            .filter_map(|l| l.split('=').next())
            .collect();
        let names: Vec<&str> = SETTINGS.iter().map(|s| s.name).collect();
        assert_eq!(assigned, names);
        for line in text.lines().filter(|l| l.starts_with("# ")) {
            // Only a single word longer than a line may overflow.
            let words = line[2..].split_whitespace().count();
            assert!(line.chars().count() <= WIDTH || words == 1, "{line}");
        }
        // The generated file parses, and what it sets is accepted.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(&path, &text).unwrap();
        let env = super::super::EnvSource::load_file_only(&path).unwrap();
        let mut env = env;
        crate::first_run::generate_missing(&mut env).unwrap();
        super::super::Settings::from_env(&env, path).unwrap();
    }

    #[test]
    fn comments_wrap_and_keep_indents() {
        let mut out = String::new();
        let text = format!("{}\n  role: {}", "word ".repeat(30), "x ".repeat(50));
        comment(&text, &mut out);
        for line in out.lines() {
            assert!(line.len() <= WIDTH, "{line}");
            assert!(line == "#" || line.starts_with("# "), "{line}");
        }
        assert!(out.lines().any(|l| l.starts_with("#   role: x")));
        assert!(out.lines().filter(|l| l.starts_with("#   x")).count() >= 1);
    }

    #[test]
    fn cells_escape_pipes_and_angle_brackets() {
        assert_eq!(
            cell("a | b <dir>\nA_*, B_* `<x>|*`"),
            "a \\| b &lt;dir&gt; A_\\*, B_\\* `<x>\\|*`"
        );
    }

    #[test]
    fn bad_markers_are_errors() {
        assert!(splice("x\n<!-- settings-table:begin -->\nno end\n").is_err());
        assert!(
            splice("<!-- settings-table:begin group=nope -->\n<!-- settings-table:end -->")
                .is_err()
        );
        assert!(
            splice("<!-- settings-table:begin colour=red -->\n<!-- settings-table:end -->")
                .is_err()
        );
        let one = splice("a\n<!-- settings-table:begin group=backups -->\nSTALE ROWS\n<!-- settings-table:end -->\nb\n")
            .unwrap();
        assert!(one.contains("`LITESTREAM_BUCKET`") && !one.contains("STALE ROWS"));
        assert!(!one.contains("`CONFIG_MANAGER_PORT`"));
        assert!(one.ends_with("<!-- settings-table:end -->\nb\n"));
    }
}
