//! The shipped schemas: they compile, their defaults validate and their
//! metadata matches the TARS facts.

use serde_json::{json, Map, Value};

use super::*;

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
    let counts: Vec<usize> = registry.iter().map(|s| s.view().fields().len()).collect();
    assert_eq!(counts, [28, 12, 32, 65, 23, 17]);
    for schema in registry.iter() {
        assert_eq!(schema.document()["additionalProperties"], json!(false));
        assert!(!schema.view().description().is_empty());
        for field in schema.view().fields() {
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
        let view = schema.view();
        let defaults = view.defaults().clone();
        assert_eq!(defaults.len(), view.fields().len());
        assert_eq!(schema.validate(&Value::Object(defaults.clone())), Ok(()));
        assert_eq!(view.with_defaults(&Map::new()), defaults);
        // The resident copies a pass over every service uses.
        let stored = Map::from_iter([("extra".to_owned(), json!(1))]);
        assert_eq!(schema.with_defaults(&stored), view.with_defaults(&stored));
        assert!(schema.secret_keys().eq(view.secret_keys()));
    }
}

#[test]
fn field_metadata_is_extracted() {
    let tts = builtin("tts-worker").view();
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

    let llm = builtin("llm-worker").view();
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

    let stt = builtin("stt-worker").view();
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
    let view = from_text.view();
    let keys: Vec<&str> = view.fields().iter().map(|f| f.key.as_str()).collect();
    assert_eq!(keys, ["zeta_fps", "alpha_device"]);
    let doc: Value = serde_json::from_str(CAMERA).unwrap();
    let from_value = ServiceSchema::compile(svc("camera"), doc).unwrap();
    assert_eq!(from_value.view().fields().len(), 2);
    assert_eq!(from_value.view().title(), "camera");
}

/// Every shipped field names the variables its service reads; no variable is
/// claimed by two fields of one service (import-env could not map it back),
/// and no `x-env` names a variable a TARS service reads: one `.env` reaches
/// the manager's container too, so such an override would freeze the field.
#[test]
fn builtins_name_the_service_variables() {
    let registry = SchemaRegistry::builtin().unwrap();
    let mut service_vars = std::collections::BTreeSet::new();
    for schema in registry.iter() {
        let mut own = std::collections::BTreeMap::new();
        for field in schema.view().fields() {
            assert!(
                !field.service_env.is_empty(),
                "{}.{} has no x-service-env",
                schema.name(),
                field.key
            );
            for var in &field.service_env {
                assert!(valid_service_env_var(var));
                if let Some(other) = own.insert(var.clone(), field.key.clone()) {
                    panic!(
                        "{}: {var} claimed by {other} and {}",
                        schema.name(),
                        field.key
                    );
                }
                service_vars.insert(var.clone());
            }
        }
    }
    for schema in registry.iter() {
        for field in schema.view().fields() {
            if let Some(var) = &field.env_var {
                assert!(
                    !service_vars.contains(var),
                    "{}.{}: x-env {var} is read by a TARS service",
                    schema.name(),
                    field.key
                );
            }
        }
    }
    let unused: Vec<String> = registry
        .iter()
        .flat_map(|s| {
            let name = s.name().to_string();
            s.view()
                .fields()
                .iter()
                .filter(|f| f.unused)
                .map(|f| format!("{name}.{}", f.key))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        unused,
        [
            "llm-worker.llm_timeout_sec",
            "router.router_stream_boundary_regex",
            "stt-worker.vad_threshold",
            "stt-worker.vad_speech_pad_ms",
            "tts-worker.volume_percent",
            "tts-worker.tts_aggregate_by_utt",
            "tts-worker.tts_aggregate_timeout_sec",
        ]
    );
}

/// Model field names are kept (nothing renamed), the variable the service
/// reads is recorded, and defaults are the service's own.
#[test]
fn builtins_follow_the_services() {
    let llm = builtin("llm-worker").view();
    let model = llm.field("openai_model").unwrap();
    assert_eq!(model.service_env, ["LLM_MODEL"]);
    assert_eq!(llm.field("rag_enabled").unwrap().default, json!(false));
    let gemini = llm.field("gemini_api_key").unwrap();
    assert!(gemini.is_secret && gemini.nullable && gemini.default.is_null());
    assert_eq!(
        llm.field("openai_responses_models").unwrap().r#type,
        "array"
    );

    let router = builtin("router").view();
    assert_eq!(
        router.field("router_stream_min_chars").unwrap().service_env,
        ["ROUTER_STREAM_MIN_CHARS", "STREAM_MIN_CHARS"]
    );
    assert_eq!(
        router.field("router_tts_voice").unwrap().service_env,
        ["ROUTER_TTS_VOICE", "PIPER_VOICE"]
    );

    let stt = builtin("stt-worker").view();
    let partials = stt.field("streaming_partials").unwrap();
    assert_eq!(
        (partials.r#type.as_str(), &partials.default),
        ("integer", &json!(1))
    );
    assert_eq!(
        stt.field("vad_silence_duration_ms").unwrap().service_env,
        ["SILENCE_THRESHOLD_MS"]
    );
    assert_eq!(stt.field("whisper_model").unwrap().default, json!("small"));
    // The library's own trust settings are not service settings.
    assert!(stt.fields().iter().all(|f| !f
        .service_env
        .iter()
        .any(|v| v.starts_with("CONFIG_") || v.starts_with("LKG_"))));
}

/// Every shipped field sits in a form section (`x-group`), and the fields of
/// one provider or backend show only while it is chosen (`x-show-when`).
#[test]
fn builtins_have_sections_and_provider_conditions() {
    let registry = SchemaRegistry::builtin().unwrap();
    for schema in registry.iter() {
        for field in schema.view().fields() {
            assert!(
                field.group.is_some(),
                "{}.{} has no x-group",
                schema.name(),
                field.key
            );
        }
    }
    let tts = builtin("tts-worker");
    let view = tts.view();
    for key in [
        "eleven_api_key",
        "eleven_voice_id",
        "eleven_api_base",
        "eleven_model_id",
        "eleven_optimize_streaming",
    ] {
        let cond = view.field(key).unwrap().show_when.clone().unwrap();
        assert_eq!(cond.field, "tts_provider");
        assert_eq!(cond.equals, vec![Value::from("elevenlabs")]);
        assert_eq!(
            view.field(key).unwrap().group.as_deref(),
            Some("ElevenLabs")
        );
    }
    let piper = view
        .field("piper_voice")
        .unwrap()
        .show_when
        .clone()
        .unwrap();
    assert_eq!(piper.equals, vec![Value::from("piper")]);
    let stt = builtin("stt-worker");
    let stt = stt.view();
    for (key, backend) in [
        ("whisper_model", "whisper"),
        ("ws_url", "ws"),
        ("openai_api_key", "openai"),
        ("openai_stt_model", "openai"),
    ] {
        let cond = stt.field(key).unwrap().show_when.clone().unwrap();
        assert_eq!(
            (cond.field.as_str(), cond.equals),
            ("stt_backend", vec![Value::from(backend)])
        );
    }
}
