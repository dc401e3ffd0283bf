//! The MQTT side: connection options from [`MqttEndpoint`], and the loop that
//! feeds received payloads to the [`UpdatePipeline`].
//!
//! Choices: clean session (nothing is queued for us while away; the retained
//! message gives the current config on every (re)connect), QoS 1 subscription,
//! a random client-id suffix, reconnect with exponential backoff (1 s to 30 s).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::RngCore as _;
use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS, TlsConfiguration, Transport,
};
use serde::de::DeserializeOwned;
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::mqtt_url::MqttEndpoint;
use crate::pipeline::{Callback, Outcome, UpdatePipeline};
use crate::startup::ConfigSource;
use crate::{ClientError, Snapshot};

const MIN_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Builds rumqttc options. The incoming packet limit is well above the payload
/// limit, so an oversized message is rejected (and counted) by the pipeline
/// instead of breaking the connection, which would re-deliver a retained
/// oversized message forever.
pub(crate) fn options(
    endpoint: &MqttEndpoint,
    client_id: String,
    keep_alive: Duration,
    max_payload: usize,
) -> Result<MqttOptions, ClientError> {
    let mut opts = MqttOptions::new(client_id, endpoint.host.clone(), endpoint.port);
    opts.set_keep_alive(keep_alive);
    opts.set_clean_session(true);
    let incoming = max_payload.saturating_mul(4).max(1 << 20);
    opts.set_max_packet_size(incoming, 64 * 1024);
    if let Some(user) = &endpoint.username {
        opts.set_credentials(user.clone(), endpoint.password.clone().unwrap_or_default());
    }
    if endpoint.tls {
        let config = tls_config(endpoint)?;
        opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(config),
        )));
    }
    Ok(opts)
}

/// rustls with the ring provider chosen explicitly (more than one provider
/// may be compiled in, and then rustls cannot pick a default by itself); CA
/// certificates from `ca_file`, else the system's roots. Public so the
/// manager's publisher connects to `mqtts://` exactly as services do.
pub fn tls_config(endpoint: &MqttEndpoint) -> Result<rustls::ClientConfig, ClientError> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::CertificateDer;

    let tls_err = |reason: String| ClientError::Tls(reason);
    let mut roots = rustls::RootCertStore::empty();
    match &endpoint.ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| tls_err(format!("{}: {e}", path.display())))?;
            for cert in certs {
                let cert = cert.map_err(|e| tls_err(format!("{}: {e}", path.display())))?;
                roots
                    .add(cert)
                    .map_err(|e| tls_err(format!("{}: {e}", path.display())))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for error in &found.errors {
                tracing::warn!(%error, "could not load a system CA certificate");
            }
            let (_added, _ignored) = roots.add_parsable_certificates(found.certs);
        }
    }
    if roots.is_empty() {
        return Err(tls_err("no CA certificates available for mqtts://".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A client id unique to this process.
pub(crate) fn default_client_id(service: &str) -> String {
    format!("{service}-cfg-{:08x}", rand::rngs::OsRng.next_u32())
}

/// Everything the loop needs; the loop owns it.
pub(crate) struct MqttTask<T> {
    pub client: AsyncClient,
    pub eventloop: EventLoop,
    pub topic: String,
    pub pipeline: UpdatePipeline<T>,
    pub callback: Option<Arc<Callback<T>>>,
    pub snapshots: watch::Sender<Snapshot<T>>,
    pub connected: Arc<AtomicBool>,
    pub shutdown: watch::Receiver<bool>,
}

impl<T: DeserializeOwned + Send + Sync + 'static> MqttTask<T> {
    /// Runs until shutdown is signalled or the [`crate::Client`] is dropped.
    pub(crate) async fn run(mut self) {
        let mut backoff = MIN_BACKOFF;
        loop {
            tokio::select! {
                changed = self.shutdown.changed() => {
                    if changed.is_err() || *self.shutdown.borrow() {
                        let _ = self.client.try_disconnect();
                        self.connected.store(false, Ordering::Relaxed);
                        return;
                    }
                }
                event = self.eventloop.poll() => match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        backoff = MIN_BACKOFF;
                        self.connected.store(true, Ordering::Relaxed);
                        tracing::info!(topic = %self.topic, "connected to the MQTT broker");
                        if let Err(error) = self.client.try_subscribe(self.topic.clone(), QoS::AtLeastOnce) {
                            tracing::warn!(%error, "could not queue the subscription");
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(publish))) if publish.topic == self.topic => {
                        self.on_payload(&publish.payload);
                    }
                    Ok(_) => {}
                    Err(error) => {
                        self.connected.store(false, Ordering::Relaxed);
                        tracing::warn!(%error, retry_in = ?backoff, "MQTT connection failed");
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = self.shutdown.changed() => {}
                        }
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                },
            }
        }
    }

    fn on_payload(&mut self, payload: &[u8]) {
        let now = OffsetDateTime::now_utc();
        let outcome = self.pipeline.handle(payload, now, self.callback.as_deref());
        if let Outcome::Applied { .. } = outcome {
            self.snapshots.send_replace(Snapshot {
                config: Arc::clone(self.pipeline.current()),
                applied: self.pipeline.applied().cloned(),
                source: ConfigSource::Mqtt,
            });
        }
    }
}
