//! Job handles: the public name of a job, which cannot be guessed.
//!
//! Job ids are sequential, so `GET /relay/{id}` would let anyone scan other
//! clients' downstream answers. The status URL names a job by a handle
//! instead: `<job id>.<tag>`, the tag being the first 128 bits of an
//! HMAC-SHA256 of the id under a key drawn from the OS when the process
//! starts. `GET /relay/{handle}` answers only when the tag matches (checked
//! in constant time); a scan of ids finds nothing. The key is drawn when
//! the process starts, or comes from the durable store ([`use_key`]), in
//! which case status URLs keep resolving across restarts, as the jobs do.

use crate::relay::JobId;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::{PoisonError, RwLock};

type HmacSha256 = Hmac<Sha256>;

/// Bytes of MAC kept in a handle (32 hex digits).
const TAG_BYTES: usize = 16;

/// Why a handle does not name a job.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandleError {
    #[error("`{0}` is not a job handle (expected `serial-slot.tag`, as in the status_url of the 202 answer)")]
    Malformed(String),
    /// Well formed, but the tag is not this server's: answered like an unknown job.
    #[error("no job {0} (never accepted, or forgotten)")]
    Unknown(String),
}

/// The process's key; set once at start (drawn, or the store's).
static KEY: RwLock<Option<HmacSha256>> = RwLock::new(None);

/// Draws the key now (at start) rather than on the first status URL,
/// unless a store already gave one.
pub fn init() {
    key();
}

/// Takes the key a durable store keeps, so handles outlive the process.
pub fn use_key(secret: &[u8; 32]) {
    *KEY.write().unwrap_or_else(PoisonError::into_inner) = Some(mac_with(secret));
}

fn mac_with(secret: &[u8]) -> HmacSha256 {
    match HmacSha256::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    }
}

fn key() -> HmacSha256 {
    if let Some(mac) = &*KEY.read().unwrap_or_else(PoisonError::into_inner) {
        return mac.clone();
    }
    let mut slot = KEY.write().unwrap_or_else(PoisonError::into_inner);
    slot.get_or_insert_with(|| {
        let mut secret = [0u8; 32];
        if let Err(e) = getrandom::fill(&mut secret) {
            // No OS randomness means no unguessable handles: refuse to go on.
            panic!("cannot draw the job-handle key from the OS: {e}");
        }
        mac_with(&secret)
    })
    .clone()
}

fn mac_of(job: JobId) -> HmacSha256 {
    let mut mac = key();
    mac.update(b"job-handle\n");
    mac.update(job.to_string().as_bytes());
    mac
}

/// The public handle of `job`.
pub fn handle(job: JobId) -> String {
    let tag = mac_of(job).finalize().into_bytes();
    format!("{job}.{}", hex::encode(&tag[..TAG_BYTES]))
}

/// The job a handle names, if its tag is this server's.
pub fn parse(raw: &str) -> Result<JobId, HandleError> {
    let malformed = || HandleError::Malformed(raw.to_owned());
    let (id, tag_hex) = raw.split_once('.').ok_or_else(malformed)?;
    let mut tag = [0u8; TAG_BYTES];
    hex::decode_to_slice(tag_hex, &mut tag).map_err(|_| malformed())?;
    let job: JobId = id.parse().map_err(|_| malformed())?;
    // The canonical spelling only: `+0-0.tag` must not alias `0-0.tag`.
    if job.to_string() != id {
        return Err(malformed());
    }
    mac_of(job)
        .verify_truncated_left(&tag)
        .map_err(|_| HandleError::Unknown(raw.to_owned()))?;
    Ok(job)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handle_names_its_job_and_nothing_else() {
        let job = JobId::new(7, 3);
        let h = handle(job);
        assert!(h.starts_with("7-3."), "{h}");
        assert_eq!(parse(&h), Ok(job));
        assert_ne!(handle(JobId::new(8, 3)), h);
        let forged = format!("7-3.{}", "0".repeat(2 * TAG_BYTES));
        assert!(matches!(parse(&forged), Err(HandleError::Unknown(_))));
        let other = handle(JobId::new(8, 3));
        let swapped = format!("7-3.{}", other.split_once('.').map_or("", |p| p.1));
        assert!(matches!(parse(&swapped), Err(HandleError::Unknown(_))));
        for bad in [
            "7-3",
            "7-3.",
            "7-3.xyz",
            "x.00",
            "+7-3.00000000000000000000000000000000",
        ] {
            assert!(
                matches!(parse(bad), Err(HandleError::Malformed(_))),
                "{bad}"
            );
        }
        let tag = h.split_once('.').map_or("", |p| p.1);
        assert!(matches!(
            parse(&format!("+7-3.{tag}")),
            Err(HandleError::Malformed(_))
        ));
    }
}
