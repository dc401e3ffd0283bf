//! MQTT side of the process tests: a real mosquitto broker started on a free
//! loopback port (stoppable and restartable on the same port, without
//! persistence, like a broker that lost its retained store), a subscriber
//! that records what arrives, and the server's public key from its `.env`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use config_manager_core::crypto::signing::{TrustedKeys, VerifyingKey};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

pub const MOSQUITTO: &str = "/usr/sbin/mosquitto";

/// A mosquitto process on `port`, killed on drop.
pub struct Broker {
    pub port: u16,
    /// A second, TLS listener (see [`Broker::start_with_tls`]).
    pub tls: Option<TlsListener>,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

/// A TLS listener with a certificate for `127.0.0.1` from a private CA.
pub struct TlsListener {
    pub port: u16,
    /// PEM of the CA that signed the broker's certificate.
    pub ca_file: std::path::PathBuf,
}

impl Broker {
    /// Starts a broker on a free port.
    pub fn start() -> Self {
        Self::start_on(crate::common::free_port())
    }

    /// Starts a broker on `port` (no persistence: a restart forgets every
    /// retained message).
    pub fn start_on(port: u16) -> Self {
        assert!(
            Path::new(MOSQUITTO).exists(),
            "{MOSQUITTO} not found: install the broker with `apt-get install -y mosquitto` \
             (scripts/test.sh does this)"
        );
        let mut broker = Self {
            port,
            tls: None,
            child: None,
            dir: tempfile::tempdir().expect("tempdir"),
        };
        broker.spawn();
        broker
    }

    /// A broker with a plain listener and a TLS listener whose certificate
    /// (for IP 127.0.0.1) is signed by a throwaway CA made with `openssl`.
    pub fn start_with_tls() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        make_certificates(dir.path());
        let mut broker = Self {
            port: crate::common::free_port(),
            tls: Some(TlsListener {
                port: crate::common::free_port(),
                ca_file: dir.path().join("ca.pem"),
            }),
            child: None,
            dir,
        };
        broker.spawn();
        broker
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let conf = self.dir.path().join("mosquitto.conf");
        let mut text = format!(
            // No queue limit: flood tests count every message the manager got.
            "allow_anonymous true\npersistence false\nlog_dest stderr\nmax_queued_messages 0\nlistener {} 127.0.0.1\n",
            self.port
        );
        if let Some(tls) = &self.tls {
            let d = self.dir.path().display();
            text.push_str(&format!(
                "listener {} 127.0.0.1\ncafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n",
                tls.port
            ));
        }
        std::fs::write(&conf, text).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("mosquitto.log"))
            .unwrap();
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start mosquitto");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        let ports = [Some(self.port), self.tls.as_ref().map(|t| t.port)];
        while ports
            .iter()
            .flatten()
            .any(|p| TcpStream::connect(("127.0.0.1", *p)).is_err())
        {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not accept on port {} within 10 s:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the broker (its retained messages are gone with it).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same port, empty.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A CA and a server certificate for IP 127.0.0.1, via the `openssl` CLI.
fn make_certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("`openssl` not found: apt-get install -y openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    // A new P-256 key in `key` and a request for it in `out` (with `-x509`,
    // a self-signed certificate), plus `extra`.
    let new_key = |key: &str, out: &str, extra: &[&str]| {
        let mut args = vec![
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            key,
            "-out",
            out,
        ];
        args.extend_from_slice(extra);
        openssl(&args);
    };
    new_key(
        "ca.key",
        "ca.pem",
        &["-x509", "-days", "2", "-subj", "/CN=config-manager test CA"],
    );
    new_key("server.key", "server.csr", &["-subj", "/CN=127.0.0.1"]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
    // mosquitto started as root drops to its own user before reading them.
    use std::os::unix::fs::PermissionsExt as _;
    let readable = |p: &Path, mode| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    readable(dir, 0o755);
    for f in ["ca.pem", "server.pem", "server.key"] {
        readable(&dir.join(f), 0o644);
    }
}

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
