//! Validation errors and compile-time rejection of broken schemas.

use serde_json::{json, Map, Value};

use super::*;

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
            "tts_streaming": true,
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
    let filled = tts.view().with_defaults(&config);
    assert_eq!(filled["volume_percent"], json!(42));
    assert_eq!(filled["extra"], json!(true));
    assert_eq!(filled["piper_voice"], json!("/voices/TARS.onnx"));
    assert_eq!(filled.len(), 24);
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
        (
            json!({"type": "object", "properties": {"a": {"type": "integer", "x-service-env": "A"}}}),
            "`x-service-env` must be an array",
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "integer", "x-service-env": []}}}),
            "must list 1 to 8 variable names (got 0)",
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "integer",
                "x-service-env": ["A1", "A2", "A3", "A4", "A5", "A6", "A7", "A8", "A9"]}}}),
            "must list 1 to 8 variable names (got 9)",
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "integer", "x-service-env": ["OK", "9LIVES"]}}}),
            "`x-service-env` entry 1 is not a variable name",
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "integer", "x-service-env": ["A-B"]}}}),
            "entry 0 is not a variable name",
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "integer", "x-service-env": [7]}}}),
            "entry 0 is not a variable name",
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "integer", "x-service-env": ["A", "A"]}}}),
            "entry 1 repeats an earlier name",
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "integer",
                "x-service-env": ["V".repeat(129)]}}}),
            "entry 0 is not a variable name",
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "integer", "x-unused": "yes"}}}),
            "`x-unused` must be true or false",
        ),
        // x-group: a short section title.
        (
            json!({"type": "object", "properties": {"a": {"type": "integer", "x-group": 7}}}),
            "`x-group` must be a string",
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "integer", "x-group": "  "}}}),
            "`x-group` must be a section title of 1 to 60 characters",
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "integer", "x-group": "G".repeat(61)}}}),
            "`x-group` must be a section title",
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "integer", "x-group": "a\nb"}}}),
            "without control characters",
        ),
        // x-show-when: its form, then what it names.
        (
            json!({"type": "object", "properties": {"a": {"type": "integer", "x-show-when": "b"}}}),
            "`x-show-when` must be an object",
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "integer", "x-show-when": {"field": "b"}}}}),
            "with exactly those two members",
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "integer",
                "x-show-when": {"field": "b", "equals": 1, "not": true}}}}),
            "with exactly those two members",
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "integer", "x-show-when": {"field": 3, "equals": 1}}}}),
            "`x-show-when.field` must be the key of another field",
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "integer", "x-show-when": {"field": "B C", "equals": 1}}}}),
            "`x-show-when.field` is not a valid key",
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "integer", "x-show-when": {"field": "a", "equals": 1}}}}),
            "names the field itself",
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "integer", "x-show-when": {"field": "b", "equals": []}}},
                "b": {"type": "integer"}}),
            "must give 1 to 16 values (got 0)",
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "integer",
                "x-show-when": {"field": "b", "equals": (0..17).collect::<Vec<_>>()}}, "b": {"type": "integer"}}}),
            "must give 1 to 16 values (got 17)",
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "integer",
                "x-show-when": {"field": "b", "equals": [{"x": 1}]}}, "b": {"type": "object"}}}),
            "values must be strings, numbers, booleans or null",
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "integer", "x-show-when": {"field": "nope", "equals": 1}}}}),
            "names a field the schema does not have",
        ),
        (
            json!({"type": "object", "properties": {
                "a": {"type": "integer", "x-show-when": {"field": "b", "equals": 1}},
                "b": {"type": "integer", "x-show-when": {"field": "c", "equals": true}},
                "c": {"type": "boolean"}}}),
            "has an `x-show-when` of its own",
        ),
        (
            json!({"type": "object", "properties": {
                "a": {"type": "integer", "x-show-when": {"field": "k", "equals": ""}},
                "k": {"type": "string", "writeOnly": true}}}),
            "names a secret",
        ),
        (
            json!({"type": "object", "properties": {
                "a": {"type": "integer", "x-show-when": {"field": "p", "equals": ["piper", "espeak"]}},
                "p": {"type": "string", "enum": ["piper", "elevenlabs"]}}}),
            "lists a value the controlling field cannot take",
        ),
        (
            json!({"type": "object", "properties": {
                "a": {"type": "integer", "x-show-when": {"field": "b", "equals": "yes"}},
                "b": {"type": "boolean"}}}),
            "lists a value the controlling field cannot take",
        ),
        (
            json!({"type": "object", "properties": {
                "a": {"type": "integer", "x-show-when": {"field": "n", "equals": 1.5}},
                "n": {"type": "integer"}}}),
            "lists a value the controlling field cannot take",
        ),
    ];
    for (doc, want) in cases {
        let got = compile_err(doc.clone());
        assert!(got.contains(want), "{doc}: {got}");
    }
    // A hostile x-service-env entry is never echoed.
    let got = compile_err(
        json!({"type": "object", "properties": {"a": {"type": "integer",
        "x-service-env": ["$(rm -rf /)"]}}}),
    );
    assert!(!got.contains("rm -rf"), "{got}");
    // The key is shown, but shortened.
    let long = "k".repeat(200);
    let got = compile_err(json!({"type": "object", "properties": { long: {"type": "integer"} }}));
    assert!(got.len() < 300, "{got}");
}

#[test]
fn service_env_and_unused_are_read() {
    let schema = ServiceSchema::compile(
        svc("camera"),
        json!({"type": "object", "properties": {
            "fps": {"type": "integer", "default": 5, "x-service-env": ["CAM_FPS", "fps_legacy", "_X"]},
            "old": {"type": "number", "default": 1.0, "x-unused": true},
            "plain": {"type": "string", "default": ""}
        }}),
    )
    .unwrap();
    let view = schema.view();
    let fps = view.field("fps").unwrap();
    assert_eq!(fps.service_env, ["CAM_FPS", "fps_legacy", "_X"]);
    assert_eq!(fps.service_env_names(), ["CAM_FPS", "fps_legacy", "_X"]);
    assert!(!fps.unused);
    let old = view.field("old").unwrap();
    assert!(old.unused);
    assert_eq!(old.service_env_names(), ["OLD"]);
    let json = serde_json::to_value(view.field("plain").unwrap()).unwrap();
    assert_eq!(json["service_env"], json!([]));
    assert_eq!(json["unused"], json!(false));
}

/// `x-group` and `x-show-when` in their good forms reach [`FieldMeta`] (and
/// so the API's field listings and the form); a single `equals` value is a
/// list of one.
#[test]
fn groups_and_show_when_are_read_into_field_meta() {
    let schema = ServiceSchema::compile(
        svc("svc"),
        json!({"type": "object", "properties": {
            "provider": {"type": "string", "enum": ["piper", "elevenlabs"], "default": "piper", "x-group": "Voice"},
            "voice_id": {"type": "string", "default": "", "x-group": "Voice",
                "x-show-when": {"field": "provider", "equals": "elevenlabs"}},
            "stream": {"type": "boolean", "default": true},
            "chunk": {"type": "integer", "default": 1, "x-show-when": {"field": "stream", "equals": [true]}},
            "level": {"type": ["integer", "null"], "default": null,
                "x-show-when": {"field": "chunk", "equals": [1, 2, null]}}
        }}),
    );
    // `level` names a conditional field: refused, with the dependent key named.
    let err = schema.unwrap_err().to_string();
    assert!(
        err.contains("\"level\"") && err.contains("of its own"),
        "{err}"
    );
    let schema = ServiceSchema::compile(
        svc("svc"),
        json!({"type": "object", "properties": {
            "provider": {"type": "string", "enum": ["piper", "elevenlabs"], "default": "piper", "x-group": "Voice"},
            "voice_id": {"type": "string", "default": "", "x-group": "Voice",
                "x-show-when": {"field": "provider", "equals": "elevenlabs"}},
            "n": {"type": ["integer", "null"], "default": null},
            "m": {"type": "integer", "default": 1, "x-show-when": {"field": "n", "equals": [1, null]}}
        }}),
    )
    .unwrap();
    let view = schema.view();
    let provider = view.field("provider").unwrap();
    assert_eq!(provider.group.as_deref(), Some("Voice"));
    assert_eq!(provider.show_when, None);
    let voice = view.field("voice_id").unwrap();
    assert_eq!(
        serde_json::to_value(voice.show_when.as_ref().unwrap()).unwrap(),
        json!({"field": "provider", "equals": ["elevenlabs"]})
    );
    assert_eq!(
        view.field("m").unwrap().show_when.as_ref().unwrap().equals,
        vec![json!(1), Value::Null]
    );
    assert_eq!(view.field("n").unwrap().group, None);
    // Display only: a value the condition hides still validates as always.
    assert!(schema
        .validate(&json!({"provider": "piper", "voice_id": "abc", "n": 2, "m": 5}))
        .is_ok());
}
