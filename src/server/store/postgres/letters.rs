//! The dead-letter queue replicas share.
//!
//! Each letter is held by one replica: the one whose relay dead-lettered
//! it, or the one that adopted it after its holder's lease expired. Only
//! the holder redrives it, since its relay keeps the letter in memory and a
//! redrive journals the new job and the letter's removal in one commit.
//! Any replica lists every letter from the table; a redrive asked of one
//! replica redrives its own letters at once and marks the others'
//! (`redrive_asked`), which their lease threads carry out at their next
//! tick ([`super::replica`]).
//!
//! Runs on the server's runtime, from the HTTP handlers, on the claims
//! connection.

use super::claims::Claims;
use super::{int, letter_of, uint, LETTER_ROUTE};
use crate::relay::{DeadLetter, JobId, RouteId};
use crate::server::actor::Key;
use crate::server::store::StoreError;
use bytes::Bytes;

/// A letter as the table holds it.
#[derive(Clone, Debug)]
pub struct SharedLetter {
    /// Its `route` is this replica's id for the letter's route, the default
    /// route's for a route this replica does not have: `route` names it.
    pub letter: DeadLetter<Key, Bytes>,
    /// The route's name, which this replica may not have.
    pub route: String,
    /// The replica holding it; `None` while no live replica does (its
    /// holder died and no reaper has taken it yet).
    pub held_by: Option<String>,
    /// Another replica asked its holder to redrive it.
    pub redrive_asked: bool,
}

/// The columns [`letter_of`] reads, the route, then the holder and the mark.
const COLUMNS: &str = "serial, id, key, client, fingerprint, payload, attempts, reason, \
     last_error, accepted_at, dead_at, redrives, late_attempt, late_at, late_response, \
     late_count, route, owner, redrive_asked";

const ASK: &str = "
UPDATE relay_letters SET redrive_asked = true
WHERE owner IS DISTINCT FROM $1 AND ($2::bigint[] IS NULL OR id = ANY($2))
RETURNING id";

impl Claims {
    /// Up to `limit` letters of every replica after `after`, oldest first.
    pub async fn letters(
        &self,
        after: Option<JobId>,
        limit: usize,
    ) -> Result<Vec<SharedLetter>, StoreError> {
        let client = self.client().await?;
        let from = after.map_or(-1, |j| i64::from(j.serial()));
        let limit = int(limit as u64);
        let sql = format!(
            "SELECT {COLUMNS} FROM relay_letters WHERE serial > $1 ORDER BY serial LIMIT $2"
        );
        let rows = self.bounded(client.query(&sql, &[&from, &limit])).await?;
        rows.iter().map(|r| self.shared_letter(r)).collect()
    }

    /// The letter of `job`, whichever replica holds it.
    pub async fn letter(&self, job: JobId) -> Result<Option<SharedLetter>, StoreError> {
        let client = self.client().await?;
        let serial = i64::from(job.serial());
        let sql = format!("SELECT {COLUMNS} FROM relay_letters WHERE serial = $1");
        let rows = self.bounded(client.query(&sql, &[&serial])).await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let found = self.shared_letter(row)?;
        // The handle named this id: a letter under another id is not it.
        Ok((found.letter.job == job).then_some(found))
    }

    /// Asks the holders of the letters named (all when `None`) that are
    /// not this replica's to redrive them; the letters so marked.
    pub async fn ask_redrive(&self, letters: Option<&[JobId]>) -> Result<Vec<JobId>, StoreError> {
        let client = self.client().await?;
        let ids: Option<Vec<i64>> = letters.map(|ls| ls.iter().map(|j| int(j.0)).collect());
        let rows = self
            .bounded(client.query(ASK, &[&self.owner, &ids]))
            .await?;
        Ok(rows.iter().map(|r| JobId(uint(r.get(0)))).collect())
    }

    fn shared_letter(&self, row: &tokio_postgres::Row) -> Result<SharedLetter, StoreError> {
        let route: &str = row.get(LETTER_ROUTE);
        let id = self.routes.resolve(route).unwrap_or(RouteId::DEFAULT);
        let letter = letter_of(row, id).map_err(|detail| StoreError::Corrupt {
            path: self.shown().into(),
            detail,
        })?;
        Ok(SharedLetter {
            letter,
            route: self.routes.shown(route).to_owned(),
            held_by: row.get(LETTER_ROUTE + 1),
            redrive_asked: row.get(LETTER_ROUTE + 2),
        })
    }
}
