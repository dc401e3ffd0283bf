//! Tests of the schema module against the real built-in schema files and
//! throw-away schema directories.

// Panicking on a broken precondition is what a test should do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;

use serde_json::Value;

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
    let filled = schema.view().with_defaults(&config);
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

mod builtins;
mod env;
mod registry;
mod validation;
