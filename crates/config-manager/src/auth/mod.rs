//! Who is calling: API tokens, roles and service scopes.

pub mod tokens;

pub use tokens::{Caller, Role, TokenTable};
