//! The one source of bearer secrets the service makes itself: API tokens
//! and the rebuild token at first run, session ids and CSRF tokens.

use base64::Engine as _;
use rand::RngCore as _;

/// A random token of 32 bytes from the OS generator, URL-safe base64
/// without padding (43 characters, safe in headers, cookies and `.env`).
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_43_url_safe_characters_and_differ() {
        let a = random_token();
        assert_eq!(a.len(), 43);
        assert!(a
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_ne!(a, random_token());
    }
}
