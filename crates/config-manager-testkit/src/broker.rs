//! A real mosquitto broker for the integration tests of every crate: started
//! on a free loopback port, stoppable and restartable on the same port
//! without persistence (like a broker that lost its retained store), with an
//! optional TLS listener whose certificate a throwaway CA signed. Killed on
//! drop. Tests use the real broker, never a fake one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback TCP port (bound and released; the tests start their own
/// servers on it right away).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

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
        Self::start_on(free_port())
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
            dir: tempfile::tempdir().unwrap(),
        };
        broker.spawn();
        broker
    }

    /// A broker with a plain listener and a TLS listener whose certificate
    /// (for IP 127.0.0.1) is signed by a throwaway CA made with `openssl`.
    pub fn start_with_tls() -> Self {
        let dir = tempfile::tempdir().unwrap();
        make_certificates(dir.path());
        let mut broker = Self {
            port: free_port(),
            tls: Some(TlsListener {
                port: free_port(),
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
            .unwrap();
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
