//! The store that keeps nothing: today's behaviour, for tests and demos.
//!
//! A restart starts empty, with a new epoch and a new job-handle key (old
//! status URLs stop resolving). `serve --store memory` does not even journal:
//! the actor performs a turn's outputs at once.

use super::{Key, Loaded, Store, StoreError};
use crate::relay::{Record, Stored};
use bytes::Bytes;

/// Forgets everything; commits cost nothing and never fail.
#[derive(Debug, Default)]
pub struct MemoryStore;

impl Store for MemoryStore {
    fn load(&mut self, now_unix_ms: u64) -> Result<Loaded, StoreError> {
        let mut handle_key = [0u8; 32];
        getrandom::fill(&mut handle_key).map_err(|e| StoreError::Io {
            path: "memory".into(),
            source: std::io::Error::other(format!("no OS randomness for the job-handle key: {e}")),
        })?;
        Ok(Loaded {
            stored: Stored::default(),
            epoch_unix_ms: now_unix_ms,
            handle_key,
        })
    }

    fn commit(&mut self, _records: &[Record<Key, Bytes>]) -> Result<(), StoreError> {
        Ok(())
    }
}
