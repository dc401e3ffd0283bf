//! The settings table: every environment variable config-manager reads, with
//! its default, range, unit, documentation and whether it is secret, in one
//! place.
//!
//! Everything else follows from this table instead of repeating it:
//!
//! - the readers: [`EnvSource`](super::EnvSource) looks variables up by a
//!   `&'static Setting` (the handles below), never by a string, and
//!   [`Setting`] cannot be built outside this module, so a variable missing
//!   from the table cannot be read; its default and range come from here too;
//! - `.env.example` and the settings tables in `docs/operations.md` and
//!   `docs/backup.md`, which a test regenerates from the table and compares
//!   (`make settings-docs` rewrites them, [`super::render`]);
//! - the variables `x-env` fields may never read ([`names`]).
//!
//! **Durations** are whole numbers in the unit their name ends with: `_MS`,
//! `_SECS` or `_DAYS`. The one exception is Litestream's own settings
//! (`LITESTREAM_SYNC_INTERVAL`, `LITESTREAM_RETENTION`), which are written
//! into its configuration file as Go duration strings (`1s`, `168h`) and so
//! keep Litestream's form. A variable renamed to follow the rule keeps its
//! old name as a deprecated alias (`Setting::alias`), read when the new
//! name is unset, with one warning.
//!
//! A new setting is one entry in `table!`'s list; its handle (a constant of
//! the same name) is what the parser passes to `EnvSource`.

use std::fmt;

/// One environment variable. Built only by the table below (the private
/// field), so every handle a reader can hold is listed.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// The variable's name.
    pub name: &'static str,
    /// The section of `.env.example` and of the docs it belongs to.
    pub group: Group,
    /// What values it takes (the "range" column).
    pub kind: Kind,
    /// The value used when it is unset.
    pub default: DefaultValue,
    /// Whether the value is a secret (keys, tokens, credentials): it is never
    /// echoed and `.env.example` never shows one.
    pub secret: bool,
    /// Where it is read from.
    pub source: Source,
    /// The value `.env.example` shows when it is not the default (a local
    /// broker for `MQTT_URL`).
    pub example: Option<&'static str>,
    /// A former name, still read when this one is unset (with a warning):
    /// its value is a Go duration string (`30s`, `1h`).
    pub alias: Option<&'static str>,
    /// What it does, for `.env.example` and the docs. `\n` is a hard line
    /// break in `.env.example` (lists); the docs join the lines.
    pub doc: &'static str,
    _sealed: Sealed,
}

#[derive(Debug, Clone, Copy)]
struct Sealed;

/// What values a setting takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text checked by its parser; the string describes the form.
    Text(&'static str),
    /// `0` or `1` (also `false`/`true`, `no`/`yes`).
    Flag,
    /// A whole number from `min` to `max` (inclusive) of `unit`.
    Int { min: u64, max: u64, unit: Unit },
    /// One of these words.
    Choice(&'static [&'static str]),
    /// A Go duration string Litestream reads itself (`500ms`, `1s`, `168h`),
    /// from `min_ms` to `max_ms` milliseconds.
    GoDuration { min_ms: u64, max_ms: u64 },
}

/// The unit of a whole-number setting; for durations also the suffix of its
/// name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A count (connections, rows, schemas, ...).
    Count,
    Bytes,
    /// `_MS`
    Milliseconds,
    /// `_SECS`
    Seconds,
    /// `_DAYS`
    Days,
}

impl Unit {
    /// The unit as the docs write it ("" for a count).
    pub fn label(self) -> &'static str {
        match self {
            Unit::Count => "",
            Unit::Bytes => "bytes",
            Unit::Milliseconds => "ms",
            Unit::Seconds => "s",
            Unit::Days => "days",
        }
    }

    /// The suffix a duration variable's name ends with; `None` for other units.
    pub fn suffix(self) -> Option<&'static str> {
        match self {
            Unit::Milliseconds => Some("_MS"),
            Unit::Seconds => Some("_SECS"),
            Unit::Days => Some("_DAYS"),
            Unit::Count | Unit::Bytes => None,
        }
    }
}

/// A setting's value when it is unset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultValue {
    /// None: the feature is off, or the setting is required (its doc says).
    None,
    /// Created on first run and appended to the `.env` file.
    Generated,
    /// This text.
    Text(&'static str),
    /// This number (flags: 0 or 1).
    Int(u64),
    /// Worked out at start-up from other settings, as described.
    Computed(&'static str),
}

/// Where a setting is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The process environment, over the `.env` file.
    EnvAndFile,
    /// The process environment only (read before or without the `.env` file).
    Process,
}

/// The sections of `.env.example` and of the docs' table, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    Http,
    Files,
    Access,
    Keys,
    Mqtt,
    Behaviour,
    Limits,
    FaultTests,
    Applied,
    Backups,
    Logs,
    Cli,
}

impl Group {
    /// Every group, in order.
    pub const ALL: [Group; 12] = [
        Group::Http,
        Group::Files,
        Group::Access,
        Group::Keys,
        Group::Mqtt,
        Group::Behaviour,
        Group::Limits,
        Group::FaultTests,
        Group::Applied,
        Group::Backups,
        Group::Logs,
        Group::Cli,
    ];

    /// The section title.
    pub fn title(self) -> &'static str {
        match self {
            Group::Http => "HTTP",
            Group::Files => "Files",
            Group::Access => "Access control",
            Group::Keys => "Keys",
            Group::Mqtt => "MQTT",
            Group::Behaviour => "Behaviour",
            Group::Limits => "Abuse limits",
            Group::FaultTests => "Fault tests (never set in production)",
            Group::Applied => "Applied state",
            Group::Backups => "Backups",
            Group::Logs => "Logs",
            Group::Cli => "Command line",
        }
    }

    /// A short word for the docs' markers (`group=backups`).
    pub fn key(self) -> &'static str {
        match self {
            Group::Http => "http",
            Group::Files => "files",
            Group::Access => "access",
            Group::Keys => "keys",
            Group::Mqtt => "mqtt",
            Group::Behaviour => "behaviour",
            Group::Limits => "limits",
            Group::FaultTests => "fault-tests",
            Group::Applied => "applied",
            Group::Backups => "backups",
            Group::Logs => "logs",
            Group::Cli => "cli",
        }
    }

    /// What applies to every setting of the section.
    pub fn intro(self) -> &'static str {
        match self {
            Group::Limits => {
                "Limits that protect a small robot computer from a misbehaving or hostile \
                 client (docs/operations.md, \"Limits and timeouts\")."
            }
            Group::Applied => {
                "With MQTT_URL set, the manager subscribes to system/config/+/applied/+ and \
                 keeps the latest report of each running instance (memory + database). \
                 Reports for a new instance beyond either cap are dropped and counted \
                 (config_manager_applied_reports_dropped_total); forget retired instances \
                 with DELETE /api/config/services/{service}/instances/{instance_id} \
                 (docs/mqtt.md)."
            }
            Group::Backups => {
                "Continuous backup with Litestream 0.5 to S3-compatible storage, and local \
                 snapshots without S3 (docs/backup.md). Setting LITESTREAM_BUCKET enables \
                 Litestream (supervised mode); unset, health reports litestream_status \
                 \"disabled\". A backup failure never stops the service. \
                 LITESTREAM_SYNC_INTERVAL and LITESTREAM_RETENTION are Litestream's own \
                 settings and take its Go duration strings (500ms, 30s, 5m, 168h)."
            }
            Group::Cli => {
                "Read by the command line (config-manager config ...) only, from the \
                 process environment (not from the .env file)."
            }
            _ => "",
        }
    }
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl PartialEq for Setting {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Setting {}

impl Setting {
    /// The default of a whole-number setting (0 for any other), for the
    /// constants that name a default (`DEFAULT_MAX_PER_SERVICE`).
    pub const fn default_int(&self) -> u64 {
        match self.default {
            DefaultValue::Int(n) => n,
            _ => 0,
        }
    }

    /// The default of a text setting ("" for any other), for the places
    /// that need it as a constant (clap's `default_value`).
    pub const fn default_text(&self) -> &'static str {
        match self.default {
            DefaultValue::Text(t) => t,
            _ => "",
        }
    }

    const fn new(name: &'static str, group: Group) -> Self {
        Self {
            name,
            group,
            kind: Kind::Text(""),
            default: DefaultValue::None,
            secret: false,
            source: Source::EnvAndFile,
            example: None,
            alias: None,
            doc: "",
            _sealed: Sealed,
        }
    }

    const fn text(mut self, form: &'static str) -> Self {
        self.kind = Kind::Text(form);
        self
    }

    const fn flag(mut self, default: bool) -> Self {
        self.kind = Kind::Flag;
        self.default = DefaultValue::Int(default as u64);
        self
    }

    const fn int(mut self, default: u64, min: u64, max: u64, unit: Unit) -> Self {
        self.kind = Kind::Int { min, max, unit };
        self.default = DefaultValue::Int(default);
        self
    }

    const fn choice(mut self, words: &'static [&'static str]) -> Self {
        self.kind = Kind::Choice(words);
        self
    }

    const fn go_duration(mut self, default: &'static str, min_ms: u64, max_ms: u64) -> Self {
        self.kind = Kind::GoDuration { min_ms, max_ms };
        self.default = DefaultValue::Text(default);
        self
    }

    const fn value(mut self, default: &'static str) -> Self {
        self.default = DefaultValue::Text(default);
        self
    }

    const fn computed(mut self, what: &'static str) -> Self {
        self.default = DefaultValue::Computed(what);
        self
    }

    const fn generated(mut self) -> Self {
        self.default = DefaultValue::Generated;
        self.secret = true;
        self
    }

    const fn secret(mut self) -> Self {
        self.secret = true;
        self
    }

    const fn process_only(mut self) -> Self {
        self.source = Source::Process;
        self
    }

    const fn example(mut self, value: &'static str) -> Self {
        self.example = Some(value);
        self
    }

    const fn alias(mut self, old_name: &'static str) -> Self {
        self.alias = Some(old_name);
        self
    }

    const fn doc(mut self, doc: &'static str) -> Self {
        self.doc = doc;
        self
    }
}

/// Declares each setting as a constant handle of the same name and lists
/// them all in [`SETTINGS`], in `.env.example` order.
macro_rules! table {
    ($($name:ident = $group:ident $(. $method:ident ( $($arg:expr),* ))* ;)*) => {
        $(
            #[doc = concat!("`", stringify!($name), "` (see the settings table).")]
            pub const $name: &Setting =
                &Setting::new(stringify!($name), Group::$group) $(. $method ( $($arg),* ))*;
        )*
        /// Every setting, in the order of `.env.example`.
        pub const SETTINGS: &[&Setting] = &[$($name),*];
    };
}

use Unit::{Bytes, Count, Days, Milliseconds, Seconds};

table! {
    CONFIG_MANAGER_HOST = Http .text("an IP address") .value("127.0.0.1")
        .doc("Address to bind. 127.0.0.1 is the safe default; use 0.0.0.0 in a container.");
    CONFIG_MANAGER_PORT = Http .int(8081, 0, 65_535, Count)
        .doc("Port of the REST API, the web UI and /metrics.");
    CONFIG_MAX_BODY_BYTES = Http .int(262_144, 1024, 16_777_216, Bytes)
        .doc("Largest accepted request body; larger ones get 413.");

    CONFIG_ENV_FILE = Files .text("path") .value(".env") .process_only()
        .doc("The .env file read at start-up and written on first run (also --env-file).");
    CONFIG_DB_PATH = Files .text("path") .value("data/config.db")
        .doc("SQLite database (WAL mode); the directory is created when missing.");
    CONFIG_LKG_CACHE_PATH = Files .text("path") .value("data/config.lkg.json")
        .doc("Last-known-good cache (HMAC-signed JSON), used when the database is unusable.");
    CONFIG_SCHEMA_DIR = Files .text("directory")
        .doc("Extra service schemas: one <service-name>.json JSON Schema per service. A file \
              named like a built-in service replaces the built-in schema. Unset: built-ins only.");
    CONFIG_SCHEMA_CACHE_SIZE = Files .int(256, 1, 1_000_000, Count)
        .doc("For how many schemas the compiled validator and the field metadata are kept in \
              memory; the least recently used are dropped and built again (~0.5 ms for 50 \
              fields) when next needed. Memory follows the services in use, not the schema \
              count.");

    CONFIG_API_TOKENS = Access .text("[name=]token:role[:service+...], comma-separated")
        .generated()
        .doc("API tokens, comma-separated entries [name=]token:role[:service+service...].\n\
              \x20 role: config.read or config.write (write includes read);\n\
              \x20 name: recorded in the audit log instead of the token (default: token-<first \
              8 hex of the token's SHA-256>);\n\
              \x20 services: limits the token to those services; such a token can read their \
              full configuration INCLUDING secrets (for the services themselves).\n\
              Tokens are at least 16 characters of A-Z a-z 0-9 - _ . ~ + /. Example: \
              ops=<random>:config.write,dash=<random>:config.read,tts=<random>:config.read:tts-worker.\n\
              When none is configured, first run creates one write token named admin.");
    REBUILD_TOKEN = Access .text("at least 16 characters") .generated()
        .doc("Guards POST /api/config/rebuild.");

    CONFIG_MASTER_KEY_BASE64 = Keys .text("32 bytes, base64") .generated()
        .doc("AES-256-GCM key of the secret values.");
    CONFIG_MASTER_KEY_ID = Keys .text("key id") .value("master-1")
        .doc("Id of CONFIG_MASTER_KEY_BASE64, stored with every secret it encrypts.");
    CONFIG_MASTER_KEY_PREVIOUS_BASE64 = Keys .text("32 bytes, base64") .secret()
        .doc("Master-key rotation: the previous key stays readable during the grace window \
              (config-manager keys rotate-master, docs/keys.md).");
    CONFIG_MASTER_KEY_PREVIOUS_ID = Keys .text("key id")
        .doc("Id of the previous master key; required when it is set.");
    LKG_HMAC_KEY_BASE64 = Keys .text(">= 32 bytes, base64") .generated()
        .doc("HMAC-SHA256 key of the last-known-good cache, separate from the master key.");
    LKG_HMAC_KEY_ID = Keys .text("key id") .value("lkg-1")
        .doc("Id of LKG_HMAC_KEY_BASE64.");
    LKG_HMAC_KEY_PREVIOUS_BASE64 = Keys .text(">= 32 bytes, base64") .secret()
        .doc("The previous LKG key during a rotation.");
    LKG_HMAC_KEY_PREVIOUS_ID = Keys .text("key id")
        .doc("Id of the previous LKG key; required when it is set.");
    CONFIG_SIGNATURE_PRIVATE_KEY = Keys .text("PKCS#8 PEM") .generated()
        .doc("Ed25519 key that signs the MQTT config messages. In a .env file write newlines \
              as \\n inside double quotes.");
    CONFIG_SIGNATURE_PUBLIC_KEY = Keys .text("SPKI PEM") .generated()
        .doc("Its public half (give it to the services); derived from the private key when \
              unset, and must match it.");

    MQTT_URL = Mqtt .text("an mqtt:// or mqtts:// URL") .secret()
        .example("mqtt://127.0.0.1:1883")
        .doc("The broker: mqtt://[user:pass@]host:port, or mqtts://... for TLS. A password in \
              it is never logged. Unset: no publishing; the service still runs.");
    MQTT_CA_FILE = Mqtt .text("path")
        .doc("CA certificates (PEM) for an mqtts:// broker. Unset: the system's roots.");
    MQTT_CLIENT_ID = Mqtt .text("1-128 printable ASCII, no spaces")
        .computed("config-manager-<8 random hex digits>")
        .doc("MQTT client id. The default is unique per process, so a restarted manager never \
              takes over the session whose last-will must fire.");
    MQTT_REISSUE_SECS = Mqtt .int(60, 1, 240, Seconds)
        .doc("Every retained config is re-signed and republished this often, so a service that \
              connects late gets a fresh issued_at (services accept another epoch's or a first \
              message only within 300 s; docs/mqtt.md).");

    ALLOW_AUTO_REBUILD = Behaviour .flag(false)
        .doc("1: rebuild a corrupted or missing database automatically (the broken file is \
              kept; a file that still opens and checks fine is never moved). 0: a broken \
              database means read-only fallback from the last-known-good cache until it is \
              restored (docs/resilience.md).");
    CONFIG_ALLOW_UNKNOWN_SERVICES = Behaviour .flag(false)
        .doc("1: accept configuration for services that have no schema (free-form objects).");
    CONFIG_MONITOR_INTERVAL_MS = Behaviour .int(1000, 50, 60_000, Milliseconds)
        .doc("How often the database monitor checks the file. A failed check switches to \
              read-only fallback; a passing one in fallback recovers.");
    CONFIG_ROTATION_BATCH = Behaviour .int(100, 1, 10_000, Count)
        .doc("Secrets re-encrypted per transaction by the master-key rotation job, which runs \
              at start-up when secrets use a previous key.");
    CONFIG_ENV_ALLOW = Behaviour .text("names or PREFIX_* patterns, comma-separated")
        .doc("Environment variables that schemas registered over the API (PUT \
              /api/config/services/{s}/schema) may read through x-env, e.g. TARS_*,ROBOT_NAME. \
              Unset: such schemas read none and are refused with 422 if they name one. \
              Built-in and CONFIG_SCHEMA_DIR schemas may read any variable except \
              config-manager's own (CONFIG_*, LKG_*, MQTT_*, LITESTREAM_*, BACKUP_*, \
              REBUILD_*, LOG_*, RUST_*, ALLOW_* ...), which no schema can ever read.");

    CONFIG_HTTP_HEADER_TIMEOUT_MS = Limits .int(10_000, 100, 600_000, Milliseconds)
        .doc("A request head (request line + headers) must arrive within this time of the \
              connection starting to wait for it; otherwise the connection is closed \
              unanswered. Also ends idle keep-alive connections.");
    CONFIG_HTTP_IDLE_TIMEOUT_MS = Limits .int(60_000, 100, 3_600_000, Milliseconds)
        .doc("A connection with no request in flight and no byte moving either way for this \
              long is closed (stalled upload, client not reading).");
    CONFIG_HTTP_MAX_CONNECTIONS = Limits .int(256, 1, 65_535, Count)
        .doc("Most open HTTP connections; at the cap the longest-idle one is closed to make \
              room (a new one waits in the listen backlog only while every connection has a \
              request in flight).");
    CONFIG_HTTP_MAX_CONNECTIONS_PER_ADDRESS = Limits .int(64, 0, 65_535, Count)
        .doc("Most open HTTP connections from one client address (all of loopback counts as \
              one address, IPv6 by /64); at the share that address's longest-idle one is \
              closed to make room, or the new one when all are busy. Behind a reverse proxy \
              (every client shares its address) set 0: no per-address cap.");
    CONFIG_LOGIN_MAX_FAILURES = Limits .int(10, 1, 100_000, Count)
        .doc("Failed UI logins per client address per window before every login from that \
              address gets 429 with Retry-After until the window ends.");
    CONFIG_LOGIN_WINDOW_SECS = Limits .int(60, 1, 86_400, Seconds)
        .doc("Length of the login rate-limit window.");
    CONFIG_AUDIT_DENIAL_WINDOW_SECS = Limits .int(60, 1, 3_600, Seconds)
        .doc("Refused requests are audited as one row per (actor, client address, reason) per \
              window of this length, carrying a count.");
    CONFIG_AUDIT_RETENTION_DAYS = Limits .int(90, 0, 36_500, Days)
        .doc("Audit rows older than this are deleted (at start-up and hourly); 0 keeps them \
              by age. Change history is never pruned.");
    CONFIG_AUDIT_MAX_ROWS = Limits .int(100_000, 0, 100_000_000, Count)
        .doc("At most this many audit rows are kept (the oldest go first, hourly); 0 means no \
              row limit.");

    CONFIG_TEST_FAILPOINT = FaultTests .choice(&["after-commit"])
        .doc("after-commit: the process kills itself (SIGKILL) after a change is committed and \
              before its last-known-good journal record is written, so the tests can show the \
              start-up repair (docs/resilience.md). Unset: off.");

    CONFIG_APPLIED_MAX_INSTANCES_PER_SERVICE = Applied .int(64, 1, 10_000, Count)
        .doc("Instances kept per service.");
    CONFIG_APPLIED_MAX_INSTANCES = Applied .int(4096, 1, 1_000_000, Count)
        .doc("Instances kept over all services.");

    LITESTREAM_MODE = Backups .choice(&["supervised", "external", "disabled"])
        .computed("supervised with LITESTREAM_BUCKET set, else disabled")
        .doc("supervised: the manager writes <data dir>/litestream.yml (0600) and runs \
              litestream replicate as its child (restarted with backoff if it dies).\n\
              external: Litestream runs elsewhere (sidecar); the manager starts nothing and \
              verifies backups through LITESTREAM_SOCKET (required then).\n\
              disabled: no backup even with a bucket set (restore still uses the bucket).");
    LITESTREAM_BIN = Backups .text("path or command") .value("litestream")
        .doc("The Litestream 0.5 binary (a bare name is looked up on PATH).");
    LITESTREAM_ENDPOINT = Backups .text("http(s)://host:port")
        .doc("S3 endpoint of MinIO and other S3-compatible stores. Unset: AWS S3.");
    LITESTREAM_BUCKET = Backups .text("3-63 of a-z 0-9 . -")
        .doc("Bucket name, checked against the S3 naming rules at start-up. Setting it \
              enables Litestream.");
    LITESTREAM_PATH = Backups .text("key prefix") .computed("the database file name")
        .doc("Key prefix in the bucket, one per robot, e.g. robots/tars-1/config.db.");
    LITESTREAM_REGION = Backups .text("region") .value("us-east-1")
        .doc("Region (MinIO accepts any).");
    LITESTREAM_ACCESS_KEY_ID = Backups .text("access key id") .secret()
        .doc("Passed to Litestream in its environment, never written to a file; set together \
              with LITESTREAM_SECRET_ACCESS_KEY. Unset: the AWS default chain (instance role, \
              ~/.aws).");
    LITESTREAM_SECRET_ACCESS_KEY = Backups .text("secret access key") .secret()
        .doc("The secret of LITESTREAM_ACCESS_KEY_ID, passed the same way.");
    LITESTREAM_FORCE_PATH_STYLE = Backups .flag(false)
        .computed("1 with LITESTREAM_ENDPOINT set, else 0")
        .doc("1: path-style URLs (MinIO).");
    LITESTREAM_SYNC_INTERVAL = Backups .go_duration("1s", 100, 3_600_000)
        .doc("How often Litestream uploads new transactions (Litestream's own setting: a Go \
              duration).");
    LITESTREAM_RETENTION = Backups .go_duration("168h", 3_600_000, 315_360_000_000)
        .doc("How far back point-in-time restore reaches (Litestream's own setting: a Go \
              duration; 168h is 7 days). Snapshots are taken at least daily.");
    LITESTREAM_SOCKET = Backups .text("path, at most 107 bytes")
        .computed("<data dir>/litestream.sock in supervised mode")
        .doc("Litestream's control socket, through which backups are verified; required in \
              external mode.");
    LITESTREAM_CHECK_INTERVAL_MS = Backups .int(30_000, 200, 3_600_000, Milliseconds)
        .alias("LITESTREAM_CHECK_INTERVAL")
        .doc("How often the manager verifies that the bucket holds every commit; each check \
              forces an upload and lists the bucket.");
    LITESTREAM_METRICS_ADDR = Backups .text("host:port")
        .doc("Address of Litestream's own Prometheus metrics (supervised mode). Unset: off.");
    BACKUP_SNAPSHOT_DIR = Backups .text("directory")
        .doc("Local snapshots (without S3): a checked copy of the database every \
              BACKUP_SNAPSHOT_INTERVAL_SECS into this directory. Unset: off.");
    BACKUP_SNAPSHOT_INTERVAL_SECS = Backups .int(3600, 1, 604_800, Seconds)
        .alias("BACKUP_SNAPSHOT_INTERVAL")
        .doc("How often a local snapshot is taken.");
    BACKUP_SNAPSHOT_KEEP = Backups .int(24, 1, 10_000, Count)
        .doc("How many local snapshots are kept (the newest).");

    LOG_FORMAT = Logs .choice(&["text", "json"]) .value("text")
        .doc("text, or json: one JSON object per line.");
    RUST_LOG = Logs .text("tracing filter") .value("info") .process_only()
        .doc("Log filter, e.g. info, config_manager=debug, or \
              info,config_manager::access=warn (no access line per request); an invalid \
              filter means info.");

    CONFIG_MANAGER_URL = Cli .text("http(s)://host:port")
        .computed("http://127.0.0.1:$CONFIG_MANAGER_PORT") .process_only()
        .doc("Base URL of the running service (also --url).");
    CONFIG_API_TOKEN = Cli .text("an API token") .secret() .process_only()
        .doc("API token the CLI sends as X-API-Token; safer than --token, which other local \
              users can see in the process list.");
}

/// Every name config-manager reads: the settings and their deprecated
/// aliases (the names no `x-env` field may read).
pub fn names() -> impl Iterator<Item = &'static str> {
    SETTINGS
        .iter()
        .flat_map(|s| std::iter::once(s.name).chain(s.alias))
}

/// The setting called `name` (or whose deprecated alias it is).
pub fn find(name: &str) -> Option<&'static Setting> {
    SETTINGS
        .iter()
        .copied()
        .find(|s| s.name == name || s.alias == Some(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every default lies in its own range, so a reader never needs to
    /// check the table's numbers (a bad entry fails here, not at start-up).
    #[test]
    fn defaults_fit_their_kind() {
        for s in SETTINGS {
            match (s.kind, s.default) {
                (Kind::Int { min, max, .. }, DefaultValue::Int(d)) => {
                    assert!(min <= d && d <= max, "{s}: default out of range");
                }
                (Kind::Int { .. }, other) => panic!("{s}: integer with default {other:?}"),
                (Kind::Flag, DefaultValue::Int(d)) => assert!(d <= 1, "{s}"),
                (Kind::Flag, DefaultValue::Computed(_)) => {}
                (Kind::Flag, other) => panic!("{s}: flag with default {other:?}"),
                (Kind::Choice(words), DefaultValue::Text(w)) => assert!(words.contains(&w), "{s}"),
                (Kind::Choice(_), DefaultValue::None | DefaultValue::Computed(_)) => {}
                (Kind::GoDuration { min_ms, max_ms }, DefaultValue::Text(d)) => {
                    let d = crate::settings::backup::GoDuration::parse(d)
                        .unwrap_or_else(|| panic!("{s}: default does not parse"));
                    let ms = u64::try_from(d.0.as_millis()).unwrap();
                    assert!(min_ms <= ms && ms <= max_ms, "{s}");
                }
                (Kind::GoDuration { .. }, other) => panic!("{s}: Go duration with {other:?}"),
                (Kind::Text(form), _) => assert!(!form.is_empty(), "{s}: describe the form"),
                (Kind::Choice(_), other) => panic!("{s}: choice with default {other:?}"),
            }
            assert!(!s.doc.is_empty(), "{s}: no doc");
            // A secret never has a default anyone could copy.
            if s.secret {
                assert!(
                    matches!(s.default, DefaultValue::None | DefaultValue::Generated),
                    "{s}: secret with a default"
                );
            }
        }
    }

    /// The duration convention: every duration is a whole number named by
    /// its unit, except Litestream's own Go strings; no other name ends like
    /// a duration.
    #[test]
    fn durations_follow_the_convention() {
        for s in SETTINGS {
            match s.kind {
                Kind::Int { unit, .. } => match unit.suffix() {
                    Some(suffix) => assert!(s.name.ends_with(suffix), "{s} should end {suffix}"),
                    None => {
                        for suffix in ["_MS", "_SECS", "_SECONDS", "_DAYS", "_INTERVAL"] {
                            assert!(!s.name.ends_with(suffix), "{s} is not a duration");
                        }
                    }
                },
                Kind::GoDuration { .. } => assert!(
                    ["LITESTREAM_SYNC_INTERVAL", "LITESTREAM_RETENTION"].contains(&s.name),
                    "{s}: only Litestream's own settings take Go durations"
                ),
                _ => {}
            }
            if s.alias.is_some() {
                assert!(
                    matches!(s.kind, Kind::Int { unit, .. } if unit.suffix().is_some()),
                    "{s}: aliases are the Go-duration names of renamed durations"
                );
            }
        }
    }

    #[test]
    fn names_are_unique_and_found() {
        let mut seen = std::collections::BTreeSet::new();
        for name in names() {
            assert!(seen.insert(name), "{name} twice");
            assert!(find(name).is_some());
        }
        assert_eq!(
            find("LITESTREAM_CHECK_INTERVAL"),
            Some(LITESTREAM_CHECK_INTERVAL_MS)
        );
        assert_eq!(find("NOT_A_SETTING"), None);
    }
}
