//! Tests of the schema module against the real built-in schema files and
//! throw-away schema directories.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use serde_json::{json, Map, Value};

use super::*;
use crate::domain::ServiceName;

fn svc(name: &str) -> ServiceName {
    ServiceName::parse(name).unwrap()
}

fn builtin(name: &str) -> std::sync::Arc<ServiceSchema> {
    SchemaRegistry::builtin().unwrap().get(name).unwrap()
}

/// Errors of validating `config` merged over the defaults.
fn errors(schema: &ServiceSchema, config: Value) -> Vec<FieldError> {
    let Value::Object(config) = config else {
        panic!("test config must be an object")
    };
    let filled = schema.with_defaults(&config);
    schema.validate(&Value::Object(filled)).unwrap_err()
}

fn pointers(errors: &[FieldError]) -> Vec<&str> {
    errors.iter().map(|e| e.pointer.as_str()).collect()
}

fn compile_err(doc: Value) -> String {
    ServiceSchema::compile(svc("x"), doc)
        .unwrap_err()
        .to_string()
}

fn write(dir: &Path, name: &str, text: &str) {
    fs::write(dir.join(name), text).unwrap();
}

const CAMERA: &str = r#"{
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "zeta_fps": {"type": "integer", "minimum": 1, "maximum": 60, "default": 15, "x-complexity": "simple"},
    "alpha_device": {"type": "string", "x-type": "path", "default": "/dev/video0", "x-complexity": "advanced"}
  }
}"#;

#[test]
fn builtins_compile_with_all_fields() {
    let registry = SchemaRegistry::builtin().unwrap();
    let names: Vec<String> = registry.names().iter().map(ToString::to_string).collect();
    assert_eq!(
        names,
        [
            "llm-worker",
            "memory-worker",
            "router",
            "stt-worker",
            "tts-worker",
            "wake-activation"
        ]
    );
    let counts: Vec<usize> = registry.iter().map(|s| s.fields().len()).collect();
    assert_eq!(counts, [5, 7, 12, 9, 20, 6]);
    for schema in registry.iter() {
        assert_eq!(schema.document()["additionalProperties"], json!(false));
        assert!(!schema.description().is_empty());
        for field in schema.fields() {
            assert!(
                field.has_default,
                "{}.{} has no default",
                schema.name(),
                field.key
            );
            assert!(!field.description.is_empty());
        }
    }
}

#[test]
fn builtin_defaults_validate() {
    for schema in SchemaRegistry::builtin().unwrap().iter() {
        let defaults = schema.defaults();
        assert_eq!(defaults.len(), schema.fields().len());
        assert_eq!(schema.validate(&Value::Object(defaults.clone())), Ok(()));
        assert_eq!(schema.with_defaults(&Map::new()), defaults);
    }
}

#[test]
fn field_metadata_is_extracted() {
    let tts = builtin("tts-worker");
    // Document order, not alphabetical.
    assert_eq!(tts.fields()[0].key, "tts_provider");
    let volume = tts.field("volume_percent").unwrap();
    assert_eq!(volume.r#type, "integer");
    assert_eq!((volume.minimum, volume.maximum), (Some(0.0), Some(200.0)));
    assert_eq!(volume.complexity, Complexity::Simple);
    assert_eq!(volume.default, json!(100));
    assert_eq!(volume.help_text, volume.description);
    let key = tts.field("eleven_api_key").unwrap();
    assert!(key.is_secret && !key.nullable);
    assert_eq!(key.r#type, "secret");
    assert_eq!(key.env_var.as_deref(), Some("TARS_ELEVENLABS_API_KEY"));
    assert_eq!(tts.secret_keys().collect::<Vec<_>>(), ["eleven_api_key"]);
    assert_eq!(tts.field("tts_wake_cache_dir").unwrap().r#type, "path");
    assert_eq!(
        tts.field("eleven_api_base").unwrap().format.as_deref(),
        Some("uri")
    );
    assert_eq!(
        tts.field("tts_aggregate_timeout_sec").unwrap().r#type,
        "number"
    );
    assert!(tts.field("nope").is_none());

    let llm = builtin("llm-worker");
    let api_key = llm.field("openai_api_key").unwrap();
    assert!(api_key.is_secret && api_key.nullable);
    assert_eq!(
        (api_key.min_length, api_key.default.clone()),
        (Some(10), Value::Null)
    );
    assert_ne!(
        llm.field("llm_provider").unwrap().help_text,
        llm.field("llm_provider").unwrap().description
    );

    let stt = builtin("stt-worker");
    let model = stt.field("whisper_model").unwrap();
    assert_eq!(model.r#type, "enum");
    assert_eq!(model.enum_values.as_ref().map(Vec::len), Some(11));
    assert_eq!(
        stt.field("sample_rate").unwrap().exclusive_minimum,
        Some(0.0)
    );
    assert_eq!(
        stt.field("ws_url").unwrap().pattern.as_deref(),
        Some("^wss?://[^\\s]+$")
    );
    assert_eq!(
        stt.field("channels").unwrap().complexity,
        Complexity::Advanced
    );

    let json = serde_json::to_value(volume).unwrap();
    assert_eq!(json["type"], "integer");
    assert_eq!(json["complexity"], "simple");
    assert_eq!(json["key"], "volume_percent");
}

#[test]
fn compile_from_value_orders_fields_by_map_and_from_text_by_document() {
    let from_text = ServiceSchema::from_json_str(svc("camera"), CAMERA).unwrap();
    let keys: Vec<&str> = from_text.fields().iter().map(|f| f.key.as_str()).collect();
    assert_eq!(keys, ["zeta_fps", "alpha_device"]);
    let doc: Value = serde_json::from_str(CAMERA).unwrap();
    let from_value = ServiceSchema::compile(svc("camera"), doc).unwrap();
    assert_eq!(from_value.fields().len(), 2);
    assert_eq!(from_value.title(), "camera");
}

#[test]
fn wrong_type_points_at_field() {
    let errs = errors(&builtin("tts-worker"), json!({"volume_percent": "loud"}));
    assert_eq!(pointers(&errs), ["/volume_percent"]);
    assert_eq!(errs[0].message, "expected integer, got string");
    let errs = errors(&builtin("tts-worker"), json!({"volume_percent": 50.5}));
    assert_eq!(pointers(&errs), ["/volume_percent"]);
    // A whole number is a valid float.
    assert!(builtin("llm-worker")
        .validate(&json!({"llm_timeout_sec": 30}))
        .is_ok());
}

#[test]
fn out_of_range_points_at_field() {
    let tts = builtin("tts-worker");
    let errs = errors(&tts, json!({"volume_percent": 500}));
    assert_eq!(pointers(&errs), ["/volume_percent"]);
    assert!(
        errs[0].message.contains("at most 200"),
        "{}",
        errs[0].message
    );
    let errs = errors(&tts, json!({"tts_aggregate_timeout_sec": 0.05}));
    assert_eq!(pointers(&errs), ["/tts_aggregate_timeout_sec"]);
    let errs = errors(&builtin("stt-worker"), json!({"sample_rate": 0}));
    assert_eq!(pointers(&errs), ["/sample_rate"]);
    assert!(errs[0].message.contains("greater than 0"));
}

#[test]
fn unknown_fields_each_get_an_error() {
    let errs = errors(&builtin("router"), json!({"bogus": 1, "a/b~c": true}));
    let mut got = pointers(&errs);
    got.sort_unstable();
    assert_eq!(got, ["/a~1b~0c", "/bogus"]);
    assert!(errs.iter().all(|e| e.message.starts_with("unknown field")));
    // A hostile key is shortened in the pointer.
    let long = "k".repeat(5_000);
    let errs = errors(&builtin("router"), json!({ long.clone(): 1 }));
    assert!(errs[0].pointer.chars().count() < 100);
}

#[test]
fn bad_enum_points_at_field() {
    let errs = errors(&builtin("stt-worker"), json!({"whisper_model": "huge"}));
    assert_eq!(pointers(&errs), ["/whisper_model"]);
    assert!(errs[0].message.starts_with("must be one of: \"tiny\""));
    assert!(!errs[0].message.contains("huge"));
    let errs = errors(&builtin("tts-worker"), json!({"tts_provider": "espeak"}));
    assert_eq!(pointers(&errs), ["/tts_provider"]);
}

#[test]
fn patterns_formats_and_nullables() {
    let memory = builtin("memory-worker");
    for bad in ["../etc/passwd", "..", ".", "a b", ""] {
        let errs = errors(&memory, json!({ "memory_file": bad }));
        assert!(
            pointers(&errs).iter().all(|p| *p == "/memory_file"),
            "{bad:?}"
        );
    }
    assert!(memory
        .validate(&json!({"memory_file": "mem.v2.gz"}))
        .is_ok());

    let tts = builtin("tts-worker");
    assert_eq!(
        pointers(&errors(&tts, json!({"eleven_api_base": "not a url"}))),
        ["/eleven_api_base"]
    );

    let stt = builtin("stt-worker");
    assert!(stt.validate(&json!({"ws_url": null})).is_ok());
    assert!(stt.validate(&json!({"ws_url": "wss://host:9/x"})).is_ok());
    assert_eq!(
        pointers(&errors(&stt, json!({"ws_url": "http://host"}))),
        ["/ws_url"]
    );

    let llm = builtin("llm-worker");
    assert!(llm.validate(&json!({"openai_api_key": null})).is_ok());
    let errs = errors(&llm, json!({"openai_api_key": "short"}));
    assert_eq!(pointers(&errs), ["/openai_api_key"]);
    assert!(!errs[0].message.contains("short"));
}

#[test]
fn every_error_is_reported() {
    let errs = errors(
        &builtin("tts-worker"),
        json!({
            "volume_percent": 201,
            "tts_concurrency": "two",
            "tts_provider": "x",
            "tts_streaming": 1,
            "unknown_one": 1,
            "unknown_two": 2
        }),
    );
    let mut got = pointers(&errs);
    got.sort_unstable();
    assert_eq!(
        got,
        [
            "/tts_concurrency",
            "/tts_provider",
            "/tts_streaming",
            "/unknown_one",
            "/unknown_two",
            "/volume_percent"
        ]
    );
}

#[test]
fn non_object_config_is_one_root_error() {
    let tts = builtin("tts-worker");
    for config in [json!([1, 2]), json!("x"), json!(null), json!(3)] {
        let errs = tts.validate(&config).unwrap_err();
        assert_eq!(pointers(&errs), [""]);
        assert!(errs[0]
            .message
            .starts_with("the configuration must be a JSON object"));
    }
}

#[test]
fn huge_values_are_not_echoed() {
    let huge = "x".repeat(100_000);
    let errs = errors(
        &builtin("tts-worker"),
        json!({ "piper_voice": huge, "volume_percent": huge }),
    );
    assert_eq!(errs.len(), 2);
    for e in &errs {
        assert!(e.message.len() <= error::MAX_MESSAGE_CHARS * 4);
        assert!(!e.message.contains("xxxx"), "{}", e.message);
    }
}

#[test]
fn with_defaults_keeps_given_values() {
    let tts = builtin("tts-worker");
    let mut config = Map::new();
    config.insert("volume_percent".into(), json!(42));
    config.insert("extra".into(), json!(true));
    let filled = tts.with_defaults(&config);
    assert_eq!(filled["volume_percent"], json!(42));
    assert_eq!(filled["extra"], json!(true));
    assert_eq!(filled["piper_voice"], json!("en_US-lessac-medium"));
    assert_eq!(filled.len(), 21);
}

fn env_schema() -> ServiceSchema {
    ServiceSchema::compile(
        svc("env-test"),
        json!({
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "count": {"type": "integer", "minimum": 0, "maximum": 10, "default": 1, "x-env": "T_COUNT"},
                "ratio": {"type": "number", "default": 0.5, "x-env": "T_RATIO"},
                "flag": {"type": "boolean", "default": false, "x-env": "T_FLAG"},
                "name": {"type": "string", "default": "a", "x-env": "T_NAME"},
                "maybe": {"type": ["integer", "null"], "default": null, "x-env": "T_MAYBE"},
                "token": {"type": ["string", "null"], "minLength": 10, "default": null, "writeOnly": true,
                          "x-secret": true, "x-env": "T_TOKEN"},
                "mode": {"enum": ["fast", "slow"], "default": "fast", "x-env": "T_MODE"},
                "list": {"type": "array", "items": {"type": "string"}, "default": [], "x-env": "T_LIST"},
                "plain": {"type": "integer", "default": 3}
            }
        }),
    )
    .unwrap()
}

fn resolve(schema: &ServiceSchema, vars: &[(&str, &str)]) -> EnvOverrides {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    schema.resolve_env(&|name: &str| vars.get(name).cloned())
}

#[test]
fn env_overrides_parse_each_type() {
    let schema = env_schema();
    let got = resolve(
        &schema,
        &[
            ("T_COUNT", " 7 "),
            ("T_RATIO", "0.25"),
            ("T_FLAG", "YES"),
            ("T_NAME", " spaced "),
            ("T_MAYBE", ""),
            ("T_TOKEN", "0123456789abc"),
            ("T_MODE", "slow"),
            ("T_LIST", r#"["a","b"]"#),
        ],
    );
    assert_eq!(got.errors, []);
    assert_eq!(
        Value::Object(got.values),
        json!({
            "count": 7, "ratio": 0.25, "flag": true, "name": " spaced ", "maybe": null,
            "token": "0123456789abc", "mode": "slow", "list": ["a", "b"]
        })
    );
    for (raw, want) in [
        ("1", true),
        ("0", false),
        ("true", true),
        ("False", false),
        ("yes", true),
        ("no", false),
    ] {
        assert_eq!(
            resolve(&schema, &[("T_FLAG", raw)]).values["flag"],
            json!(want),
            "{raw}"
        );
    }
    assert_eq!(
        resolve(&schema, &[("T_MAYBE", "null")]).values["maybe"],
        Value::Null
    );
    assert_eq!(
        resolve(&schema, &[("T_MAYBE", "12")]).values["maybe"],
        json!(12)
    );
    assert_eq!(
        resolve(&schema, &[("T_RATIO", "2")]).values["ratio"],
        json!(2.0)
    );
    assert!(resolve(&schema, &[]).values.is_empty());
}

#[test]
fn bad_env_values_are_skipped_and_reported() {
    let schema = env_schema();
    let vars = [
        ("T_COUNT", "eleven"),
        ("T_RATIO", "NaN"),
        ("T_FLAG", "maybe"),
        ("T_MAYBE", "1.5"),
        ("T_MODE", "medium"),
        ("T_LIST", "{not json"),
    ];
    let got = resolve(&schema, &vars);
    assert!(got.values.is_empty(), "{:?}", got.values);
    let mut got_pointers = pointers(&got.errors);
    got_pointers.sort_unstable();
    assert_eq!(
        got_pointers,
        ["/count", "/flag", "/list", "/maybe", "/mode", "/ratio"]
    );
    assert!(got
        .errors
        .iter()
        .all(|e| e.message.contains("environment variable T_")));
    // A value that parses but breaks the rules is refused too, without echoing it.
    let got = resolve(&schema, &[("T_COUNT", "99"), ("T_TOKEN", "short")]);
    assert!(got.values.is_empty());
    assert_eq!(pointers(&got.errors), ["/count", "/token"]);
    assert!(got.errors[0].message.contains("at most 10"));
    assert!(!got.errors[1].message.contains("short"));
    // The convenience methods agree with resolve_env.
    let lookup = |name: &str| (name == "T_COUNT").then(|| "x".to_owned());
    assert!(schema.env_overrides(&lookup).is_empty());
    assert_eq!(pointers(&schema.env_override_errors(&lookup)), ["/count"]);
}

#[test]
fn builtin_secret_env_override() {
    let llm = builtin("llm-worker");
    let lookup = |name: &str| (name == "TARS_OPENAI_API_KEY").then(|| "sk-0123456789".to_owned());
    assert_eq!(
        llm.env_overrides(&lookup)["openai_api_key"],
        json!("sk-0123456789")
    );
    let unset = |name: &str| (name == "TARS_OPENAI_API_KEY").then(String::new);
    assert_eq!(llm.env_overrides(&unset)["openai_api_key"], Value::Null);
}

#[test]
fn compile_rejects_broken_schemas() {
    let cases = [
        (json!([1]), "must be a JSON object"),
        (json!({"properties": {}}), "\"type\": \"object\""),
        (json!({"type": "string"}), "\"type\": \"object\""),
        (
            json!({"type": "object", "properties": []}),
            "`properties` must be an object",
        ),
        (
            json!({"type": "object", "properties": {"bad-key": {"type": "integer"}}}),
            "not a valid key",
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "integer", "minimum": "x"}}}),
            "not a valid JSON Schema",
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "integer", "default": 5, "maximum": 3}}}),
            "defaults do not satisfy",
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}),
            "defaults do not satisfy",
        ),
        (
            json!({"type": "object", "properties": {"a": {"default": 1}}}),
            "declare a non-null `type`",
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "integer", "x-complexity": "hard"}}}),
            "x-complexity",
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "integer", "x-env": "lower"}}}),
            "x-env",
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "integer", "x-type": "color"}}}),
            "x-type",
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "integer", "x-type": "enum"}}}),
            "needs an `enum`",
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "integer", "x-secret": true}}}),
            "secret must have type string",
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "string", "writeOnly": true, "default": "hunter2"}}}),
            "default must be null or empty",
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "string", "x-secret": "yes"}}}),
            "`x-secret` must be true or false",
        ),
    ];
    for (doc, want) in cases {
        let got = compile_err(doc.clone());
        assert!(got.contains(want), "{doc}: {got}");
    }
    // The key is shown, but shortened.
    let long = "k".repeat(200);
    let got = compile_err(json!({"type": "object", "properties": { long: {"type": "integer"} }}));
    assert!(got.len() < 300, "{got}");
}

#[test]
fn load_dir_adds_and_replaces() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "camera.json", CAMERA);
    let tts_doc = r#"{"type": "object", "additionalProperties": false,
        "properties": {"volume_percent": {"type": "integer", "default": 50}}}"#;
    write(dir.path(), "tts-worker.json", tts_doc);
    write(dir.path(), "README.md", "not a schema");
    fs::create_dir(dir.path().join("sub.json")).unwrap();

    let mut registry = SchemaRegistry::builtin().unwrap();
    let loaded = registry.load_dir(dir.path()).unwrap();
    assert_eq!(loaded, [svc("camera"), svc("tts-worker")]);
    assert_eq!(registry.len(), 7);
    assert_eq!(registry.get("camera").unwrap().fields()[0].key, "zeta_fps");
    assert_eq!(registry.get("tts-worker").unwrap().fields().len(), 1);
}

#[test]
fn load_dir_rejects_bad_files_and_changes_nothing() {
    let cases: [(&str, &str, &str); 7] = [
        ("Camera.json", CAMERA, "not a valid service name"),
        (".hidden.json", CAMERA, "not a valid service name"),
        ("camera.json", "{\"type\": \"object\",", "not valid JSON"),
        (
            "camera.json",
            r#"{"type": "object", "properties": {"a": {"type": "integer", "minimum": "x"}}}"#,
            "not a valid JSON Schema",
        ),
        (
            "camera.json",
            r#"{"type": "object", "properties": {"a": {"type": "integer", "default": "x"}}}"#,
            "defaults do not satisfy",
        ),
        ("camera.json", "[1, 2]", "must be a JSON object"),
        (
            "camera.json",
            r#"{"type": "object", "properties": {"x.y": {"type": "integer"}}}"#,
            "not a valid key",
        ),
    ];
    for (file, text, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "aaa-good.json", CAMERA);
        write(dir.path(), file, text);
        let mut registry = SchemaRegistry::builtin().unwrap();
        let before = registry.hash();
        let err = registry.load_dir(dir.path()).unwrap_err();
        let shown = err.to_string();
        assert!(shown.contains(file), "{file}: {shown}");
        assert!(shown.contains(want), "{file}: {shown}");
        assert_eq!(
            registry.len(),
            6,
            "a failed load_dir must not register anything"
        );
        assert_eq!(registry.hash(), before);
    }
}

#[test]
fn load_dir_limits_and_io_errors() {
    let dir = tempfile::tempdir().unwrap();
    let padding = " ".repeat(usize::try_from(MAX_SCHEMA_FILE_BYTES).unwrap());
    write(dir.path(), "camera.json", &format!("{CAMERA}{padding}"));
    let err = SchemaRegistry::new().load_dir(dir.path()).unwrap_err();
    assert!(matches!(err, SchemaError::BadFile { .. }), "{err}");
    assert!(err.to_string().contains("limit"));

    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("camera.json"), [0xff, 0xfe, 0x00]).unwrap();
    let err = SchemaRegistry::new().load_dir(dir.path()).unwrap_err();
    assert!(err.to_string().contains("camera.json"), "{err}");

    let missing = dir.path().join("missing");
    let err = SchemaRegistry::new().load_dir(&missing).unwrap_err();
    assert!(matches!(err, SchemaError::Io { .. }));
    assert!(err.to_string().contains("missing"));

    let empty = tempfile::tempdir().unwrap();
    assert_eq!(SchemaRegistry::new().load_dir(empty.path()).unwrap(), []);
}

#[test]
fn hash_is_stable_and_tracks_content() {
    let a = SchemaRegistry::builtin().unwrap();
    let b = SchemaRegistry::builtin().unwrap();
    assert_eq!(a.hash(), b.hash());
    assert_eq!(a.hash().len(), 64);
    assert!(a
        .hash()
        .bytes()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert_ne!(a.hash(), SchemaRegistry::new().hash());

    // The same schemas from files (reformatted) hash the same.
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in BUILTIN_SCHEMAS {
        let doc: Value = serde_json::from_str(text).unwrap();
        write(
            dir.path(),
            &format!("{name}.json"),
            &serde_json::to_string(&doc).unwrap(),
        );
    }
    let mut from_files = SchemaRegistry::new();
    from_files.load_dir(dir.path()).unwrap();
    assert_eq!(from_files.hash(), a.hash());

    // Any content change changes it.
    let mut changed = a.clone();
    let mut doc = changed.get("tts-worker").unwrap().document().clone();
    doc["properties"]["volume_percent"]["maximum"] = json!(150);
    changed.register(ServiceSchema::compile(svc("tts-worker"), doc).unwrap());
    assert_ne!(changed.hash(), a.hash());
    // The clone taken before was not affected.
    assert_eq!(
        a.get("tts-worker")
            .unwrap()
            .field("volume_percent")
            .unwrap()
            .maximum,
        Some(200.0)
    );
    assert_eq!(a.hash(), b.hash());
}

#[test]
fn try_register_refuses_duplicates() {
    let mut registry = SchemaRegistry::builtin().unwrap();
    let camera = ServiceSchema::from_json_str(svc("camera"), CAMERA).unwrap();
    registry.try_register(camera).unwrap();
    let again = ServiceSchema::from_json_str(svc("camera"), CAMERA).unwrap();
    assert!(
        matches!(registry.try_register(again), Err(SchemaError::Duplicate(name)) if name == "camera")
    );
    assert!(registry.contains("camera") && !registry.contains("../camera"));
    assert!(registry.get("no-such").is_none());
}
