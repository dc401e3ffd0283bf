//! Editing the `.env` file in place for key rotations: replaces or appends
//! `KEY="value"` lines, keeps every other line as it was, and writes the new
//! file atomically with mode 0600 (`config_manager_core::fs::atomic`).

use std::path::Path;

use crate::first_run::dotenv_quote;

/// Sets `updates` in the env file at `path` (creating it if needed).
pub fn set_vars(path: &Path, updates: &[(&str, String)]) -> std::io::Result<()> {
    let old = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let mut lines: Vec<String> = Vec::new();
    let mut done = vec![false; updates.len()];
    for line in old.lines() {
        let name = line
            .trim_start()
            .trim_start_matches("export ")
            .split('=')
            .next()
            .unwrap_or("")
            .trim();
        match updates.iter().position(|(k, _)| *k == name) {
            Some(i) if !line.trim_start().starts_with('#') => {
                if !done[i] {
                    lines.push(format!("{}={}", updates[i].0, dotenv_quote(&updates[i].1)));
                    done[i] = true;
                }
            }
            _ => lines.push(line.to_owned()),
        }
    }
    for (i, (k, v)) in updates.iter().enumerate() {
        if !done[i] {
            lines.push(format!("{k}={}", dotenv_quote(v)));
        }
    }
    config_manager_core::fs::atomic::write_atomic(path, (lines.join("\n") + "\n").as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_and_appends_keeping_other_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(&path, "# comment\nMQTT_URL=\"1\"\nB=2\n# MQTT_URL=old\n").unwrap();
        set_vars(&path, &[("MQTT_URL", "x\ny".into()), ("C", "3".into())]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "# comment\nMQTT_URL=\"x\\ny\"\nB=2\n# MQTT_URL=old\nC=\"3\"\n"
        );
        let env = crate::settings::EnvSource::load_file_only(&path).unwrap();
        assert_eq!(env.get(crate::settings::table::MQTT_URL), Some("x\ny"));
    }
}
