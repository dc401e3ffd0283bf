//! Evidence that backups reach the bucket, gathered from Litestream itself.
//!
//! Two questions, two sources:
//!
//! 1. *Has every local transaction been uploaded?* `POST /sync` on
//!    Litestream's control socket (HTTP over a Unix socket, what `litestream
//!    sync -wait` sends) forces an upload and answers with the local `txid`
//!    and the `replicated_txid`. An upload that fails comes back as an error.
//! 2. *Could that transaction be restored right now?* With no new writes,
//!    `sync` answers `no_change` even while S3 is down, and Litestream's
//!    `last_sync_at` moves on local syncs alone (recipes §2). Worse, a bucket
//!    that lost its contents (wiped, recreated) still takes new incremental
//!    files and `sync` reports them replicated, yet nothing can be restored.
//!    So the manager asks for a restore plan (`litestream restore -dry-run
//!    -json`, S3 LISTs only, nothing downloaded): the plan must exist (a
//!    snapshot and a contiguous chain) and reach the local `txid`.
//!
//! Both talk to Litestream rather than to S3 directly, so the manager needs
//! no S3 client and sees the bucket exactly as a restore would.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Why a check failed; the text is shown in health events and logs (it holds
/// no credentials).
#[derive(Debug, Error)]
pub enum CheckError {
    #[error("cannot reach the Litestream control socket {path}: {source}")]
    Socket {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("Litestream did not answer within {0:?}")]
    Timeout(Duration),
    #[error("Litestream answered with an unreadable response: {0}")]
    Protocol(String),
    #[error("upload failed: {0}")]
    SyncFailed(String),
    #[error("the replica is behind: local transaction {local}, uploaded {replicated}")]
    Behind { local: u64, replicated: u64 },
    /// The bucket answers but holds no restorable copy of the current state.
    #[error("the bucket holds no restorable copy up to transaction {local}: {reason}")]
    NotRestorable { local: u64, reason: String },
    #[error("cannot check the bucket: {0}")]
    List(String),
}

/// The answer of `POST /sync`.
#[derive(Debug, Clone, Deserialize)]
pub struct SyncReply {
    /// `synced` or `no_change`.
    pub status: String,
    pub txid: u64,
    pub replicated_txid: u64,
}

#[derive(Deserialize)]
struct ErrorReply {
    error: String,
}

/// The largest answer read from the socket.
const MAX_REPLY: u64 = 1024 * 1024;

/// Asks the Litestream behind `socket` to upload `db` now and waits for the
/// upload (bounded by `timeout`, which Litestream also gets).
pub async fn sync(socket: &Path, db: &Path, timeout: Duration) -> Result<SyncReply, CheckError> {
    let body = serde_json::json!({
        "path": db.to_string_lossy(),
        "wait": true,
        "timeout": timeout.as_secs().max(1),
    })
    .to_string();
    // HTTP/1.0: the server answers without chunking and closes the
    // connection, so the reply is simply everything until EOF.
    let request = format!(
        "POST /sync HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let exchange = async {
        let mut stream = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(|source| CheckError::Socket {
                path: socket.to_owned(),
                source,
            })?;
        let io = |e: std::io::Error| CheckError::Protocol(e.to_string());
        stream.write_all(request.as_bytes()).await.map_err(io)?;
        let mut reply = Vec::new();
        stream
            .take(MAX_REPLY)
            .read_to_end(&mut reply)
            .await
            .map_err(io)?;
        Ok::<_, CheckError>(reply)
    };
    let limit = timeout + Duration::from_secs(2);
    let raw = tokio::time::timeout(limit, exchange)
        .await
        .map_err(|_| CheckError::Timeout(limit))??;
    parse_sync_reply(&raw)
}

fn parse_sync_reply(raw: &[u8]) -> Result<SyncReply, CheckError> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| CheckError::Protocol("no header/body separator".into()))?;
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| CheckError::Protocol("no status code".into()))?;
    if code != 200 {
        let reason = serde_json::from_str::<ErrorReply>(body)
            .map(|e| e.error)
            .unwrap_or_else(|_| format!("HTTP {code}"));
        return Err(CheckError::SyncFailed(reason));
    }
    let reply: SyncReply =
        serde_json::from_str(body).map_err(|e| CheckError::Protocol(e.to_string()))?;
    if reply.replicated_txid < reply.txid {
        return Err(CheckError::Behind {
            local: reply.txid,
            replicated: reply.replicated_txid,
        });
    }
    Ok(reply)
}

#[derive(Deserialize)]
struct RestorePlan {
    max_txid: String,
}

/// How to run the `litestream` binary against the bucket.
#[derive(Debug, Clone)]
pub struct BucketProbe {
    pub bin: PathBuf,
    pub config: PathBuf,
    pub db: PathBuf,
    pub env: Vec<(&'static str, String)>,
}

impl BucketProbe {
    /// The transaction a restore would bring back now. `NotRestorable` when
    /// the bucket answers without a usable plan (`local` is the txid the
    /// caller needs, for the message); `List` when it cannot be asked.
    pub async fn restorable_txid(&self, local: u64, timeout: Duration) -> Result<u64, CheckError> {
        // Never written (dry run); a path that does not exist, as restore
        // refuses an existing output.
        let target =
            std::env::temp_dir().join(format!("config-manager-dry-run-{}.db", std::process::id()));
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.args(["restore", "-no-expand-env", "-dry-run", "-json", "-config"])
            .arg(&self.config)
            .arg("-o")
            .arg(&target)
            .arg(&self.db)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        child_env(&mut cmd, &self.env);
        let output = tokio::time::timeout(timeout, cmd.output())
            .await
            .map_err(|_| CheckError::List(format!("no answer within {timeout:?}")))?
            .map_err(|e| CheckError::List(format!("cannot run {}: {e}", self.bin.display())))?;
        if !output.status.success() {
            let why = last_line(&output.stdout, &output.stderr);
            // Litestream's words for "reachable, but no usable chain".
            if why.contains("no matching backup") || why.contains("non-contiguous") {
                return Err(CheckError::NotRestorable { local, reason: why });
            }
            return Err(CheckError::List(why));
        }
        let plan: RestorePlan = json_object(&output.stdout)
            .ok_or_else(|| CheckError::List("unreadable restore plan".into()))?;
        let txid = u64::from_str_radix(&plan.max_txid, 16)
            .map_err(|_| CheckError::List(format!("bad txid '{}'", plan.max_txid)))?;
        if txid < local {
            return Err(CheckError::NotRestorable {
                local,
                reason: format!("a restore would stop at transaction {txid}"),
            });
        }
        Ok(txid)
    }
}

/// The JSON object in a Litestream `-json` output (which may follow log lines).
pub fn json_object<T: serde::de::DeserializeOwned>(output: &[u8]) -> Option<T> {
    let text = String::from_utf8_lossy(output);
    let start = text
        .find("\n{")
        .map(|i| i + 1)
        .or_else(|| text.starts_with('{').then_some(0))?;
    let end = text.rfind('}')?;
    serde_json::from_str(text.get(start..=end)?).ok()
}

/// The environment of every Litestream process: the manager's own, minus
/// `AWS_CA_BUNDLE` (Litestream 0.5 cannot load any S3 configuration while it
/// is set, recipes §2), plus the bucket credentials.
pub fn child_env(cmd: &mut tokio::process::Command, env: &[(&'static str, String)]) {
    cmd.env_remove("AWS_CA_BUNDLE");
    for (k, v) in env {
        cmd.env(k, v);
    }
}

/// The last non-empty output line (Litestream's error), for messages.
pub fn last_line(stdout: &[u8], stderr: &[u8]) -> String {
    let pick = |b: &[u8]| {
        String::from_utf8_lossy(b)
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| l.trim().chars().take(300).collect::<String>())
    };
    pick(stderr)
        .or_else(|| pick(stdout))
        .unwrap_or_else(|| "no output".into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn sync_replies_parse() {
        let ok = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"status\":\"synced\",\"path\":\"/d/c.db\",\"txid\":7,\"replicated_txid\":7}";
        let r = parse_sync_reply(ok).unwrap();
        assert_eq!((r.txid, r.replicated_txid), (7, 7));
        let behind =
            b"HTTP/1.0 200 OK\r\n\r\n{\"status\":\"synced\",\"txid\":8,\"replicated_txid\":7}";
        assert!(matches!(
            parse_sync_reply(behind),
            Err(CheckError::Behind {
                local: 8,
                replicated: 7
            })
        ));
        let failed = b"HTTP/1.0 500 Internal Server Error\r\n\r\n{\"error\":\"s3: put object: context deadline exceeded\"}";
        match parse_sync_reply(failed) {
            Err(CheckError::SyncFailed(m)) => assert!(m.contains("deadline")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_sync_reply(b"garbage"),
            Err(CheckError::Protocol(_))
        ));
    }

    #[test]
    fn restore_plans_are_found_after_log_lines() {
        #[derive(Deserialize)]
        struct Plan {
            max_txid: String,
        }
        let out = b"time=x level=INFO msg=hello\n{\n  \"max_txid\": \"000000000000000c\",\n  \"files\": [{\"a\": 1}]\n}\n";
        let plan: Plan = json_object(out).unwrap();
        assert_eq!(plan.max_txid, "000000000000000c");
        let plain: Plan = json_object(b"{\"max_txid\": \"01\"}").unwrap();
        assert_eq!(plain.max_txid, "01");
        assert!(json_object::<Plan>(b"Error: no matching backup files available").is_none());
    }
}
