//! Who is calling: API tokens, roles and service scopes; the web UI's
//! session store, the failed-login limiter and the aggregated audit of
//! refused requests. Nothing here knows HTTP: the `http` layer reads headers
//! and cookies and calls into these.

pub mod address_key;
pub mod denials;
pub mod login_limit;
pub mod random_token;
pub mod sessions;
pub mod tokens;

pub use address_key::AddressKey;
pub use random_token::random_token;
pub use tokens::{Caller, Role, TokenTable};
