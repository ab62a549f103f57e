//! Body signatures: HMAC-SHA256 over the raw request body.
//!
//! A shared secret lets the relay refuse bodies that did not come from a
//! client holding it (or were altered on the way). The client sends
//! `X-Signature: sha256=<hex>` (the `sha256=` prefix is optional). The check
//! compares in constant time, so the time an answer takes says nothing about
//! how many leading bytes of a forged signature were right.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Longest `X-Signature` value looked at: a SHA-256 in hex plus the prefix.
pub const SIGNATURE_CHARS_MAX: usize = 7 + 64;

/// Why a signature was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the X-Signature header is missing")]
    Missing,
    #[error("the X-Signature header is not `sha256=` followed by 64 hex digits")]
    Malformed,
    #[error("the X-Signature does not match the body")]
    Mismatch,
}

/// A configured secret, able to sign and verify bodies.
#[derive(Clone)]
pub struct Signer {
    mac: HmacSha256,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(<redacted>)")
    }
}

impl Signer {
    pub fn new(secret: &[u8]) -> Signer {
        // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
        let mac = match HmacSha256::new_from_slice(secret) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC accepts keys of every length"),
        };
        Signer { mac }
    }

    /// The header value a client would send for `body`.
    pub fn sign(&self, body: &[u8]) -> String {
        let mut mac = self.mac.clone();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    /// Checks `header` (the raw `X-Signature` value, if any) against `body`.
    pub fn verify(&self, header: Option<&[u8]>, body: &[u8]) -> Result<(), SignatureError> {
        let header = header.ok_or(SignatureError::Missing)?;
        if header.len() > SIGNATURE_CHARS_MAX {
            return Err(SignatureError::Malformed);
        }
        let digits = header.strip_prefix(b"sha256=").unwrap_or(header);
        let mut expected = [0u8; 32];
        hex::decode_to_slice(digits, &mut expected).map_err(|_| SignatureError::Malformed)?;
        let mut mac = self.mac.clone();
        mac.update(body);
        mac.verify_slice(&expected)
            .map_err(|_| SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_body_verifies_with_or_without_prefix() {
        let s = Signer::new(b"secret");
        let sig = s.sign(b"{}");
        assert_eq!(s.verify(Some(sig.as_bytes()), b"{}"), Ok(()));
        let bare = sig.trim_start_matches("sha256=");
        assert_eq!(s.verify(Some(bare.as_bytes()), b"{}"), Ok(()));
    }

    #[test]
    fn altered_missing_and_malformed_signatures_are_refused() {
        let s = Signer::new(b"secret");
        let sig = s.sign(b"{}");
        assert_eq!(
            s.verify(Some(sig.as_bytes()), b"{ }"),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(s.verify(None, b"{}"), Err(SignatureError::Missing));
        assert_eq!(
            s.verify(Some(b"sha256=zz"), b"{}"),
            Err(SignatureError::Malformed)
        );
        let other = Signer::new(b"other").sign(b"{}");
        assert_eq!(
            s.verify(Some(other.as_bytes()), b"{}"),
            Err(SignatureError::Mismatch)
        );
    }
}
