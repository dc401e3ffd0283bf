//! MQTT side of the process tests: a real mosquitto broker started on a free
//! loopback port (stoppable and restartable on the same port, without
//! persistence, like a broker that lost its retained store), a subscriber
//! that records what arrives, and the server's public key from its `.env`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::Path;

use std::time::Duration;

use config_manager_core::crypto::signing::{TrustedKeys, VerifyingKey};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

pub use config_manager_testkit::broker::Broker;

/// One received PUBLISH.
#[derive(Debug, Clone)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
    pub qos: QoS,
}

impl Message {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).expect("payload is JSON")
    }
}

/// A subscriber on `filter` whose messages arrive on a channel.
pub struct Subscriber {
    client: AsyncClient,
    rx: mpsc::UnboundedReceiver<Message>,
    task: tokio::task::JoinHandle<()>,
}

impl Subscriber {
    /// Connects, subscribes with QoS 1 and waits for the SUBACK, so every
    /// retained message arrives after this returns.
    pub async fn connect(port: u16, filter: &str) -> Self {
        let id = format!("test-sub-{}", uuid::Uuid::new_v4().simple());
        let mut opts = MqttOptions::new(id, "127.0.0.1", port);
        opts.set_max_packet_size(1 << 20, 1 << 20);
        opts.set_clean_session(true);
        let (client, mut eventloop) = AsyncClient::new(opts, 16);
        client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .expect("queue subscribe");
        let (tx, rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = tx.send(Message {
                            topic: p.topic.clone(),
                            payload: p.payload.to_vec(),
                            retain: p.retain,
                            qos: p.qos,
                        });
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), ready_rx)
            .await
            .expect("SUBACK within 10 s")
            .expect("subscriber task alive");
        Self { client, rx, task }
    }

    /// The next message satisfying `pred`, skipping others; panics after
    /// `within`.
    pub async fn next_matching(
        &mut self,
        within: Duration,
        what: &str,
        pred: impl Fn(&Message) -> bool,
    ) -> Message {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(m)) if pred(&m) => return m,
                Ok(Some(_)) => {}
                Ok(None) => panic!("subscriber closed while waiting for {what}"),
                Err(_) => panic!("no message {what} within {within:?}"),
            }
        }
    }

    /// Collects the latest message per topic until `done` holds for them;
    /// panics after `within`. Unlike [`Subscriber::next_matching`] nothing is
    /// skipped, so retained messages that arrive in any order all count.
    pub async fn latest_until(
        &mut self,
        within: Duration,
        what: &str,
        done: impl Fn(&HashMap<String, Message>) -> bool,
    ) -> HashMap<String, Message> {
        let deadline = tokio::time::Instant::now() + within;
        let mut latest = HashMap::new();
        while !done(&latest) {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(m)) => {
                    latest.insert(m.topic.clone(), m);
                }
                Ok(None) => panic!("subscriber closed while waiting for {what}"),
                Err(_) => panic!(
                    "no {what} within {within:?}; latest: {:?}",
                    latest
                        .values()
                        .map(|m| (
                            m.topic.as_str(),
                            m.retain,
                            String::from_utf8_lossy(&m.payload)
                                .chars()
                                .take(120)
                                .collect::<String>()
                        ))
                        .collect::<Vec<_>>()
                ),
            }
        }
        latest
    }

    /// Everything received so far.
    pub fn drain(&mut self) -> Vec<Message> {
        let mut out = Vec::new();
        while let Ok(m) = self.rx.try_recv() {
            out.push(m);
        }
        out
    }

    pub async fn close(self) {
        let _ = self.client.disconnect().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.task.abort();
    }
}

/// `CONFIG_SIGNATURE_PUBLIC_KEY` from the server's `.env`.
pub fn env_public_key(env_file: &Path) -> VerifyingKey {
    let pem = dotenvy::from_path_iter(env_file)
        .expect("read .env")
        .filter_map(Result::ok)
        .find(|(k, _)| k == "CONFIG_SIGNATURE_PUBLIC_KEY")
        .map(|(_, v)| v)
        .expect("CONFIG_SIGNATURE_PUBLIC_KEY in .env");
    VerifyingKey::from_spki_pem(&pem).expect("public key parses")
}

pub fn trusted(key: &VerifyingKey) -> TrustedKeys {
    TrustedKeys::from_keys([key.clone()])
}
