//! The MQTT settings (`MQTT_*`): the broker, the client id and the re-issue
//! interval, validated at start-up. The publisher (`crate::mqtt`) takes them
//! as plain data.

use std::path::PathBuf;
use std::time::Duration;

use config_manager_client::mqtt_url::MqttUrlError;
use config_manager_client::MqttEndpoint;
use rand::RngCore as _;

use super::env::{bad, EnvSource, SettingsError};
use super::table::{MQTT_CA_FILE, MQTT_CLIENT_ID, MQTT_REISSUE_SECS, MQTT_URL};

/// Keep-alive of the broker connection (not a setting): the broker
/// publishes the manager's last-will after 1.5 times this when the manager
/// vanishes without closing its socket (`crate::mqtt`'s module docs).
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The MQTT part of the settings, validated at start-up.
#[derive(Debug, Clone)]
pub struct MqttSettings {
    /// Broker address and credentials (`Debug` hides the password).
    pub endpoint: MqttEndpoint,
    pub client_id: String,
    pub keep_alive: Duration,
    /// How often every retained config is re-signed and republished.
    pub reissue_interval: Duration,
}

impl MqttSettings {
    /// Reads `MQTT_URL` (no URL: publishing is off), `MQTT_CA_FILE`,
    /// `MQTT_CLIENT_ID` and `MQTT_REISSUE_SECS`. Errors name the variable and
    /// never echo a password.
    pub fn from_env(env: &EnvSource) -> Result<Option<Self>, SettingsError> {
        let Some(url) = env.get(MQTT_URL) else {
            return Ok(None);
        };
        let mut endpoint = MqttEndpoint::parse(url)
            .map_err(|e: MqttUrlError| bad(MQTT_URL.name, e.to_string()))?;
        endpoint.ca_file = env.get(MQTT_CA_FILE).map(|p| PathBuf::from(p.trim()));
        if endpoint.ca_file.is_some() && !endpoint.tls {
            return Err(bad(
                MQTT_CA_FILE.name,
                "is only used with an mqtts:// MQTT_URL",
            ));
        }
        let client_id = match env.get(MQTT_CLIENT_ID).map(str::trim) {
            None => format!("config-manager-{:08x}", rand::rngs::OsRng.next_u32()),
            Some(id) if id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()) => {
                id.to_owned()
            }
            Some(_) => {
                return Err(bad(
                    MQTT_CLIENT_ID.name,
                    "must be 1 to 128 printable ASCII characters without spaces",
                ))
            }
        };
        // At most 240 s (the table's range): services accept a message of
        // another epoch (or their first one) only while it is younger than
        // their `max_age` (5 minutes by default), so the retained copy must
        // be re-signed well within that; 240 s leaves a minute for delivery
        // and clock differences.
        let reissue_interval = env.duration(MQTT_REISSUE_SECS)?;
        Ok(Some(Self {
            endpoint,
            client_id,
            keep_alive: KEEP_ALIVE,
            reissue_interval,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_and_defaults() {
        let s = MqttSettings::from_env(&EnvSource::of(&[("MQTT_URL", "mqtt://u:pw@broker:1884")]))
            .unwrap()
            .unwrap();
        assert_eq!(
            (s.endpoint.host.as_str(), s.endpoint.port),
            ("broker", 1884)
        );
        assert_eq!(s.reissue_interval, Duration::from_secs(60));
        assert_eq!(s.keep_alive, KEEP_ALIVE);
        assert!(s.client_id.starts_with("config-manager-"));
        assert!(!format!("{s:?}").contains("pw"));
    }

    #[test]
    fn explicit_values_and_errors_name_the_variable() {
        let s = MqttSettings::from_env(&EnvSource::of(&[
            ("MQTT_URL", "mqtt://broker"),
            ("MQTT_CLIENT_ID", "cm-main"),
            ("MQTT_REISSUE_SECS", "30"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(s.client_id, "cm-main");
        assert_eq!(s.reissue_interval, Duration::from_secs(30));

        let err =
            |pairs: &[(&str, &str)]| MqttSettings::from_env(&EnvSource::of(pairs)).unwrap_err();
        let e = err(&[("MQTT_URL", "http://u:secretpw@h")]);
        assert_eq!(e.var, "MQTT_URL");
        assert!(!e.to_string().contains("secretpw"));
        assert_eq!(
            err(&[("MQTT_URL", "mqtt://h"), ("MQTT_REISSUE_SECS", "300")]).var,
            "MQTT_REISSUE_SECS"
        );
        assert_eq!(
            err(&[("MQTT_URL", "mqtt://h"), ("MQTT_REISSUE_SECS", "0")]).var,
            "MQTT_REISSUE_SECS"
        );
        assert_eq!(
            err(&[("MQTT_URL", "mqtt://h"), ("MQTT_CLIENT_ID", "a b")]).var,
            "MQTT_CLIENT_ID"
        );
        assert_eq!(
            err(&[("MQTT_URL", "mqtt://h"), ("MQTT_CA_FILE", "/ca.pem")]).var,
            "MQTT_CA_FILE"
        );
    }
}
