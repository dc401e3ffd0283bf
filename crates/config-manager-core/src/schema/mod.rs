//! Service schemas: one JSON Schema document per service describes its settings
//! (types, defaults, ranges, help text, secret and advanced markers, environment
//! overrides). The registry is the single definition of "valid".
//!
//! INTERFACE CONTRACT (implemented by the schema work; other modules code against it):
//!
//! ```ignore
//! pub struct FieldError { pub pointer: String, pub message: String }   // Serialize
//! pub enum SchemaError { Invalid{service,reason}, Io{path,source}, Duplicate(String), ... } // thiserror
//! pub struct FieldMeta {                      // Serialize; one per top-level property
//!     pub key: String, pub r#type: String,    // serialized as "type": string|integer|number|boolean|enum|path|secret|array|object
//!     pub complexity: Complexity, pub description: String, pub help_text: String,
//!     pub examples: Vec<Value>, pub is_secret: bool, pub default: Value,
//!     pub env_var: Option<String>, pub enum_values: Option<Vec<Value>>,
//!     pub minimum: Option<f64>, pub maximum: Option<f64>, pub min_length: Option<u64>,
//!     pub max_length: Option<u64>, pub pattern: Option<String>, pub nullable: bool, pub title: String,
//! }
//! pub struct ServiceSchema { .. }
//! impl ServiceSchema {
//!     pub fn compile(name: ServiceName, doc: Value) -> Result<Self, SchemaError>;
//!     pub fn name(&self) -> &ServiceName;
//!     pub fn document(&self) -> &Value;          // the raw JSON Schema
//!     pub fn description(&self) -> &str;
//!     pub fn fields(&self) -> &[FieldMeta];      // ordered as in the document
//!     pub fn field(&self, key: &str) -> Option<&FieldMeta>;
//!     pub fn defaults(&self) -> serde_json::Map<String, Value>;
//!     pub fn validate(&self, config: &Value) -> Result<(), Vec<FieldError>>;
//!     pub fn with_defaults(&self, config: &Map<String,Value>) -> Map<String,Value>; // fills missing keys
//!     pub fn env_overrides(&self, lookup: &dyn Fn(&str) -> Option<String>) -> Map<String, Value>; // typed values
//!     pub fn secret_keys(&self) -> impl Iterator<Item=&str>;
//! }
//! pub struct SchemaRegistry { .. }             // Clone (Arc inside)
//! impl SchemaRegistry {
//!     pub fn builtin() -> Result<Self, SchemaError>;                   // the six TARS services
//!     pub fn load_dir(&mut self, dir: &Path) -> Result<Vec<ServiceName>, SchemaError>; // *.json, file stem = service
//!     pub fn register(&mut self, schema: ServiceSchema);  // replaces
//!     pub fn get(&self, name: &str) -> Option<Arc<ServiceSchema>>;
//!     pub fn names(&self) -> Vec<ServiceName>;                         // sorted
//!     pub fn hash(&self) -> String;                                    // sha256 hex over canonical docs, sorted by name
//! }
//! ```
