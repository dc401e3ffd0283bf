//! `healthcheck`: a dependency-free HTTP/1.1 GET of the health endpoint, so
//! the container image needs no curl and the check costs one small process.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use super::{default_url, CliError, CliResult};
use config_manager_service::settings::EnvSource;

/// Exit 0 when `GET /api/config/health` answers 200.
pub fn check(url: Option<String>, env_file: &Path) -> CliResult {
    // A broken .env must not make the probe lie: fall back to defaults.
    let env = EnvSource::load(env_file).unwrap_or_default();
    let base = url.unwrap_or_else(|| default_url(&env));
    let Some(hostport) = base
        .strip_prefix("http://")
        .map(|s| s.trim_end_matches('/'))
    else {
        return Err(CliError::Usage(
            "healthcheck: only http:// URLs are supported".into(),
        ));
    };
    let result = (|| -> std::io::Result<String> {
        let mut stream = std::net::TcpStream::connect(hostport)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.set_write_timeout(Some(Duration::from_secs(5)))?;
        write!(
            stream,
            "GET /api/config/health HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n"
        )?;
        let mut out = String::new();
        stream.read_to_string(&mut out)?;
        Ok(out)
    })();
    match result {
        Ok(resp) if resp.starts_with("HTTP/1.1 200") => {
            println!("healthy");
            Ok(())
        }
        Ok(resp) => Err(CliError::Failed(format!(
            "unhealthy: {}",
            resp.lines().next().unwrap_or("")
        ))),
        Err(e) => Err(CliError::Failed(format!("unreachable: {e}"))),
    }
}
