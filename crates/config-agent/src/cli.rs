//! Command line and agent-only settings. Every option also reads a
//! `CONFIG_AGENT_*` variable (decision 3 of issue 24: agent-only names carry
//! that prefix, so one shared `.env` cannot collide with the manager's); the
//! client settings are the client libraries' own variables.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use config_manager_core::domain::ServiceName;
use rustix::process::Signal;

#[derive(Debug, Parser)]
#[command(
    name = "config-agent",
    version,
    about = "Runs a program with its configuration from the config-manager in its environment"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs `<command> [args…]` with the service's configuration rendered
    /// into its environment, and restarts it on verified updates.
    Run(RunArgs),
}

/// The file formats of `--render-file`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RenderFormat {
    /// `NAME="value"` lines.
    Dotenv,
    /// One JSON object, variable → value.
    Json,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The service's name (the schema and config of the manager).
    #[arg(long, env = "SERVICE_NAME", value_parser = parse_service)]
    pub service: ServiceName,

    /// Signal that asks the program to stop (name like TERM or SIGTERM, or a number).
    #[arg(long, env = "CONFIG_AGENT_STOP_SIGNAL", default_value = "TERM", value_parser = parse_signal)]
    pub stop_signal: Signal,

    /// How long the program gets to stop before SIGKILL, in milliseconds.
    #[arg(long, env = "CONFIG_AGENT_STOP_GRACE_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(0..=3_600_000))]
    pub stop_grace_ms: u64,

    /// An exit within this time after a restart for a new version rolls
    /// that version back (milliseconds).
    #[arg(long, env = "CONFIG_AGENT_CRASH_WINDOW_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(0..=3_600_000))]
    pub crash_window_ms: u64,

    /// Also render the configuration to this file (0600, atomic), and on a
    /// change send the reload signal instead of restarting.
    #[arg(long, env = "CONFIG_AGENT_RENDER_FILE")]
    pub render_file: Option<PathBuf>,

    /// Format of the render file.
    #[arg(
        long,
        env = "CONFIG_AGENT_RENDER_FORMAT",
        value_enum,
        default_value = "dotenv"
    )]
    pub render_format: RenderFormat,

    /// Signal sent after the render file changed.
    #[arg(long, env = "CONFIG_AGENT_RELOAD_SIGNAL", default_value = "HUP", value_parser = parse_signal)]
    pub reload_signal: Signal,

    /// Variables that keep their inherited value (comma-separated names).
    #[arg(long, env = "CONFIG_PINNED_ENV", default_value = "", value_parser = parse_pinned)]
    pub pinned_env: PinnedEnv,

    /// The program and its arguments.
    #[arg(last = true, required = true, num_args = 1..)]
    pub command: Vec<OsString>,
}

impl RunArgs {
    pub fn stop_grace(&self) -> Duration {
        Duration::from_millis(self.stop_grace_ms)
    }

    pub fn crash_window(&self) -> Duration {
        Duration::from_millis(self.crash_window_ms)
    }
}

/// The set of pinned variable names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PinnedEnv(pub BTreeSet<String>);

fn parse_service(raw: &str) -> Result<ServiceName, String> {
    ServiceName::parse(raw.trim()).map_err(|e| format!("not a service name: {e}"))
}

fn parse_pinned(raw: &str) -> Result<PinnedEnv, String> {
    let mut set = BTreeSet::new();
    for name in raw.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if !config_manager_core::applied::is_env_name(name) {
            return Err(format!(
                "{:?} is not a variable name ([A-Za-z_][A-Za-z0-9_]*, at most 128)",
                config_manager_core::domain::display_key(name)
            ));
        }
        set.insert(name.to_owned());
    }
    Ok(PinnedEnv(set))
}

/// Signals the agent can send, by name.
const SIGNALS: &[(&str, Signal)] = &[
    ("HUP", Signal::HUP),
    ("INT", Signal::INT),
    ("QUIT", Signal::QUIT),
    ("KILL", Signal::KILL),
    ("USR1", Signal::USR1),
    ("USR2", Signal::USR2),
    ("TERM", Signal::TERM),
    ("ALRM", Signal::ALARM),
    ("WINCH", Signal::WINCH),
];

/// A signal by name (`TERM`, `SIGTERM`, any case) or number.
pub fn parse_signal(raw: &str) -> Result<Signal, String> {
    let upper = raw.trim().to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some((_, sig)) = SIGNALS.iter().find(|(n, _)| *n == name) {
        return Ok(*sig);
    }
    if let Ok(n) = name.parse::<i32>() {
        if let Some((_, sig)) = SIGNALS.iter().find(|(_, s)| s.as_raw() == n) {
            return Ok(*sig);
        }
    }
    let names: Vec<&str> = SIGNALS.iter().map(|(n, _)| *n).collect();
    Err(format!("unknown signal; one of {}", names.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals() {
        assert_eq!(parse_signal("TERM").unwrap(), Signal::TERM);
        assert_eq!(parse_signal("sigint").unwrap(), Signal::INT);
        assert_eq!(parse_signal("1").unwrap(), Signal::HUP);
        for bad in ["", "NOPE", "999", "-1", "SIG"] {
            assert!(parse_signal(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pinned_names() {
        assert_eq!(parse_pinned("").unwrap(), PinnedEnv::default());
        let p = parse_pinned(" LOG_LEVEL, TTS_X ,").unwrap();
        assert_eq!(p.0.len(), 2);
        for bad in ["A-B", "1A", "A B", "Ä"] {
            assert!(parse_pinned(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn command_line() {
        let cli = Cli::try_parse_from([
            "config-agent",
            "run",
            "--service",
            "tts-worker",
            "--stop-grace-ms",
            "500",
            "--",
            "python3",
            "-c",
            "x",
        ])
        .unwrap();
        let Command::Run(args) = cli.command;
        assert_eq!(args.service, "tts-worker");
        assert_eq!(args.stop_grace(), Duration::from_millis(500));
        assert_eq!(args.command.len(), 3);
        for bad in [
            vec!["config-agent", "run", "--service", "tts-worker"],
            vec!["config-agent", "run", "--service", "Bad Name", "--", "x"],
            vec![
                "config-agent",
                "run",
                "--service",
                "a",
                "--stop-grace-ms",
                "-1",
                "--",
                "x",
            ],
            vec![
                "config-agent",
                "run",
                "--service",
                "a",
                "--render-format",
                "yaml",
                "--",
                "x",
            ],
        ] {
            assert!(Cli::try_parse_from(&bad).is_err(), "{bad:?}");
        }
    }
}
