//! Request signatures: HMAC-SHA256 over what identifies one operation.
//!
//! A signature over the body alone lets anyone who saw one request send it
//! again under another `Idempotency-Key` (or none) and run it again. So the
//! MAC covers a versioned canonical string naming the operation:
//!
//! ```text
//! v1\n<METHOD>\n<path with query>\n<timestamp>\n<idempotency key or empty>\n<hex sha256 of the body>
//! ```
//!
//! (no trailing newline). The client sends `X-Signature-Timestamp: <unix
//! seconds>` and `X-Signature: v1=<hex HMAC>`. The server refuses a
//! timestamp outside its window and, through the
//! [`ReplayGuard`](super::replay_guard::ReplayGuard), a MAC it has already
//! seen inside it. Checks compare in constant time.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// The version tag, first line of the canonical string and prefix of the header value.
pub const VERSION: &str = "v1";
/// Longest `X-Signature` value looked at: `v1=` and a SHA-256 in hex.
pub const SIGNATURE_CHARS_MAX: usize = 3 + 64;
/// Longest `X-Signature-Timestamp` value looked at.
const TIMESTAMP_CHARS_MAX: usize = 20;

/// Why a signature was refused; each says how to fix it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error(
        "the X-Signature header is missing: sign the request (see the README's signing section)"
    )]
    Missing,
    #[error("the X-Signature-Timestamp header is missing: send the unix time in seconds at which the request was signed")]
    MissingTimestamp,
    #[error("send one {0} header, not several")]
    Duplicate(&'static str),
    #[error("the X-Signature uses the retired body-only scheme: sign the v1 canonical string and send `v1=<hex>`")]
    OldScheme,
    #[error("the X-Signature header is not `v1=` followed by 64 hex digits")]
    Malformed,
    #[error("the X-Signature-Timestamp is not a whole number of seconds since 1970")]
    MalformedTimestamp,
    #[error("the X-Signature-Timestamp is {skew_s} s away from the server's clock, beyond the {window_s} s window: sign with the current time (check the client's clock)")]
    Stale { skew_s: u64, window_s: u64 },
    #[error("the X-Signature does not match the request: sign `v1`, method, path with query, timestamp, Idempotency-Key and the body's SHA-256, one per line, with the shared secret")]
    Mismatch,
}

/// What a signature covers, borrowed from the request.
#[derive(Clone, Copy, Debug)]
pub struct Signed<'a> {
    pub method: &'a str,
    /// The path with its query, as sent (`/relay`, `/relay?x=1`).
    pub path_and_query: &'a str,
    pub timestamp: u64,
    pub key: Option<&'a str>,
    pub body: &'a [u8],
}

impl Signed<'_> {
    /// The canonical string the MAC is computed over.
    pub fn canonical(&self) -> String {
        format!(
            "{VERSION}\n{}\n{}\n{}\n{}\n{}",
            self.method,
            self.path_and_query,
            self.timestamp,
            self.key.unwrap_or(""),
            hex::encode(Sha256::digest(self.body))
        )
    }
}

/// The raw signature headers of a request.
#[derive(Clone, Copy, Debug, Default)]
pub struct Presented<'a> {
    /// Every `X-Signature` value sent.
    pub signatures: &'a [&'a [u8]],
    /// Every `X-Signature-Timestamp` value sent.
    pub timestamps: &'a [&'a [u8]],
}

/// A signature that matched: its MAC (the replay guard's key) and its timestamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified {
    pub mac: [u8; 32],
    pub timestamp: u64,
}

/// A configured secret, able to sign and verify requests.
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

    /// The `X-Signature` value a client sends for `signed`.
    pub fn sign(&self, signed: &Signed<'_>) -> String {
        let mut mac = self.mac.clone();
        mac.update(signed.canonical().as_bytes());
        format!("{VERSION}={}", hex::encode(mac.finalize().into_bytes()))
    }

    /// Checks the presented headers against the request, with `now` and
    /// `window_s` in unix seconds. `signed.timestamp` is ignored: the
    /// presented one is used.
    pub fn verify(
        &self,
        presented: Presented<'_>,
        signed: Signed<'_>,
        now: u64,
        window_s: u64,
    ) -> Result<Verified, SignatureError> {
        let header = one(presented.signatures, "X-Signature")?.ok_or(SignatureError::Missing)?;
        let stamp = one(presented.timestamps, "X-Signature-Timestamp")?
            .ok_or(SignatureError::MissingTimestamp)?;
        let expected = parse_signature(header)?;
        let timestamp = parse_timestamp(stamp)?;
        let skew_s = now.abs_diff(timestamp);
        if skew_s > window_s {
            return Err(SignatureError::Stale { skew_s, window_s });
        }
        let mut mac = self.mac.clone();
        mac.update(
            Signed {
                timestamp,
                ..signed
            }
            .canonical()
            .as_bytes(),
        );
        mac.verify_slice(&expected)
            .map_err(|_| SignatureError::Mismatch)?;
        Ok(Verified {
            mac: expected,
            timestamp,
        })
    }
}

/// At most one value of a header: several are refused, never "first wins".
fn one<'a>(values: &[&'a [u8]], name: &'static str) -> Result<Option<&'a [u8]>, SignatureError> {
    match values {
        [] => Ok(None),
        [v] => Ok(Some(v)),
        _ => Err(SignatureError::Duplicate(name)),
    }
}

fn parse_signature(header: &[u8]) -> Result<[u8; 32], SignatureError> {
    if header.starts_with(b"sha256=") || (header.len() == 64 && !header.contains(&b'=')) {
        return Err(SignatureError::OldScheme);
    }
    if header.len() > SIGNATURE_CHARS_MAX {
        return Err(SignatureError::Malformed);
    }
    let digits = header
        .strip_prefix(b"v1=")
        .ok_or(SignatureError::Malformed)?;
    let mut mac = [0u8; 32];
    hex::decode_to_slice(digits, &mut mac).map_err(|_| SignatureError::Malformed)?;
    Ok(mac)
}

fn parse_timestamp(value: &[u8]) -> Result<u64, SignatureError> {
    let ok = !value.is_empty()
        && value.len() <= TIMESTAMP_CHARS_MAX
        && value.iter().all(u8::is_ascii_digit);
    std::str::from_utf8(value)
        .ok()
        .filter(|_| ok)
        .and_then(|s| s.parse().ok())
        .ok_or(SignatureError::MalformedTimestamp)
}

/// The server's wall clock in unix seconds (0 before 1970, which no
/// client's timestamp will be within a window of). The one wall-clock read
/// of the server: a signature's timestamp is wall time by definition, and it
/// never feeds the relay.
#[allow(clippy::disallowed_methods)]
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000;

    fn request(key: Option<&'static str>) -> Signed<'static> {
        Signed {
            method: "POST",
            path_and_query: "/relay",
            timestamp: NOW,
            key,
            body: br#"{"amount": 10}"#,
        }
    }

    fn check(
        s: &Signer,
        sig: &str,
        ts: &str,
        signed: Signed<'_>,
    ) -> Result<Verified, SignatureError> {
        let sigs = [sig.as_bytes()];
        let tss = [ts.as_bytes()];
        let presented = Presented {
            signatures: &sigs,
            timestamps: &tss,
        };
        s.verify(presented, signed, NOW, 300)
    }

    /// The README's worked example, byte for byte: its canonical string and
    /// the signature `openssl dgst -sha256 -hmac s3cret` gives for it.
    #[test]
    fn the_readme_example_signs_as_documented() {
        let signed = request(Some("order-42"));
        assert_eq!(
            signed.canonical(),
            "v1\nPOST\n/relay\n1700000000\norder-42\n\
             7f8b279ef4be0909382db4442750f8eb84f2874cf43c826a86acffb6dc28c84d"
        );
        assert_eq!(
            Signer::new(b"s3cret").sign(&signed),
            "v1=71479963421b8fb2cdd50e5b5b12ae3e72b442b11979001fa9f41416c0963e9e"
        );
    }

    #[test]
    fn a_signed_request_verifies_and_nothing_else_does() {
        let s = Signer::new(b"secret");
        let signed = request(Some("k1"));
        let sig = s.sign(&signed);
        let ts = NOW.to_string();
        assert!(check(&s, &sig, &ts, signed).is_ok());
        let other_key = request(Some("k2"));
        assert_eq!(
            check(&s, &sig, &ts, other_key),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(&s, &sig, &ts, request(None)),
            Err(SignatureError::Mismatch)
        );
        let other_path = Signed {
            path_and_query: "/relay?x=1",
            ..signed
        };
        assert_eq!(
            check(&s, &sig, &ts, other_path),
            Err(SignatureError::Mismatch)
        );
        let later = (NOW + 1).to_string();
        assert_eq!(
            check(&s, &sig, &later, signed),
            Err(SignatureError::Mismatch)
        );
        let forged = Signer::new(b"other").sign(&signed);
        assert_eq!(
            check(&s, &forged, &ts, signed),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn stale_malformed_old_and_repeated_headers_are_refused() {
        let s = Signer::new(b"secret");
        let signed = Signed {
            timestamp: NOW - 301,
            ..request(None)
        };
        let sig = s.sign(&signed);
        assert_eq!(
            check(&s, &sig, &(NOW - 301).to_string(), signed),
            Err(SignatureError::Stale {
                skew_s: 301,
                window_s: 300
            })
        );
        let ts = NOW.to_string();
        let old = format!("sha256={}", "0".repeat(64));
        assert_eq!(check(&s, &old, &ts, signed), Err(SignatureError::OldScheme));
        assert_eq!(
            check(&s, "v1=zz", &ts, signed),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            check(&s, &sig, "-5", signed),
            Err(SignatureError::MalformedTimestamp)
        );
        let sigs = [sig.as_bytes(), sig.as_bytes()];
        let tss = [ts.as_bytes()];
        let twice = Presented {
            signatures: &sigs,
            timestamps: &tss,
        };
        assert_eq!(
            s.verify(twice, signed, NOW, 300),
            Err(SignatureError::Duplicate("X-Signature"))
        );
        let none = Presented::default();
        assert_eq!(
            s.verify(none, signed, NOW, 300),
            Err(SignatureError::Missing)
        );
    }
}
