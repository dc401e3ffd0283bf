//! `MQTT_URL` parsing: `mqtt://[user[:pass]@]host[:port]` and `mqtts://…` (TLS).
//!
//! Parsed by hand rather than with a URL crate because the grammar is small and
//! the error must name the variable without echoing a password.

use std::fmt;
use std::path::PathBuf;

use thiserror::Error;

/// Why an MQTT URL was refused. Never contains the password.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MqttUrlError {
    #[error("MQTT URL must start with mqtt:// or mqtts://")]
    Scheme,
    #[error("MQTT URL has no host")]
    MissingHost,
    #[error("MQTT URL port is not a number between 1 and 65535")]
    Port,
    #[error("MQTT URL must not have a path, query or fragment")]
    Path,
    #[error("MQTT URL user or password has an invalid %-escape")]
    Escape,
}

/// A broker address with optional credentials and TLS.
#[derive(Clone, PartialEq, Eq)]
pub struct MqttEndpoint {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub tls: bool,
    /// PEM file of CA certificates for `mqtts://`; system roots when `None`.
    pub ca_file: Option<PathBuf>,
}

impl MqttEndpoint {
    /// Parses `mqtt://[user[:pass]@]host[:port]` (default port 1883) or
    /// `mqtts://…` (default port 8883). User and password may be %-escaped;
    /// IPv6 hosts are written in brackets (`mqtt://[::1]:1883`).
    pub fn parse(url: &str) -> Result<Self, MqttUrlError> {
        let url = url.trim();
        let (tls, rest) = if let Some(r) = url.strip_prefix("mqtts://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("mqtt://") {
            (false, r)
        } else {
            return Err(MqttUrlError::Scheme);
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#']) {
            return Err(MqttUrlError::Path);
        }
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(info) => match info.split_once(':') {
                Some((u, p)) => (Some(percent_decode(u)?), Some(percent_decode(p)?)),
                None => (Some(percent_decode(info)?), None),
            },
        };
        let (host, port) = split_host_port(hostport)?;
        if host.is_empty() {
            return Err(MqttUrlError::MissingHost);
        }
        Ok(Self {
            host,
            port: port.unwrap_or(if tls { 8883 } else { 1883 }),
            username: username.filter(|u| !u.is_empty()),
            password,
            tls,
            ca_file: None,
        })
    }
}

impl fmt::Debug for MqttEndpoint {
    /// Shows everything but the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MqttEndpoint")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

fn split_host_port(hostport: &str) -> Result<(String, Option<u16>), MqttUrlError> {
    let (host, port) = if let Some(inner) = hostport.strip_prefix('[') {
        let (host, after) = inner.split_once(']').ok_or(MqttUrlError::MissingHost)?;
        match after {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':').ok_or(MqttUrlError::Port)?)),
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => Some(n),
            _ => return Err(MqttUrlError::Port),
        },
    };
    Ok((host.to_owned(), port))
}

fn percent_decode(s: &str) -> Result<String, MqttUrlError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(MqttUrlError::Escape)?;
            let hex = std::str::from_utf8(hex).map_err(|_| MqttUrlError::Escape)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| MqttUrlError::Escape)?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| MqttUrlError::Escape)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_tls_with_defaults() {
        let e = MqttEndpoint::parse("mqtt://broker").unwrap();
        assert_eq!((e.host.as_str(), e.port, e.tls), ("broker", 1883, false));
        let e = MqttEndpoint::parse("mqtts://broker.local").unwrap();
        assert_eq!((e.port, e.tls), (8883, true));
    }

    #[test]
    fn credentials_port_and_escapes() {
        let e = MqttEndpoint::parse("mqtt://tars:p%40ss%3Aword@127.0.0.1:18830/").unwrap();
        assert_eq!(e.username.as_deref(), Some("tars"));
        assert_eq!(e.password.as_deref(), Some("p@ss:word"));
        assert_eq!((e.host.as_str(), e.port), ("127.0.0.1", 18830));
        let shown = format!("{e:?}");
        assert!(!shown.contains("p@ss") && shown.contains("<redacted>"));
        let e = MqttEndpoint::parse("mqtt://user@[::1]:1884").unwrap();
        assert_eq!((e.host.as_str(), e.port, e.password), ("::1", 1884, None));
    }

    #[test]
    fn errors() {
        assert_eq!(MqttEndpoint::parse("tcp://x"), Err(MqttUrlError::Scheme));
        assert_eq!(
            MqttEndpoint::parse("mqtt://"),
            Err(MqttUrlError::MissingHost)
        );
        assert_eq!(MqttEndpoint::parse("mqtt://h:0"), Err(MqttUrlError::Port));
        assert_eq!(
            MqttEndpoint::parse("mqtt://h:99999"),
            Err(MqttUrlError::Port)
        );
        assert_eq!(MqttEndpoint::parse("mqtt://h/x"), Err(MqttUrlError::Path));
        assert_eq!(
            MqttEndpoint::parse("mqtt://u:%zz@h"),
            Err(MqttUrlError::Escape)
        );
    }
}
