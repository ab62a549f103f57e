//! One connection to PostgreSQL for a blocking thread, with bounded
//! reconnects: a lost connection is retried no sooner than a backoff that
//! doubles from [`BACKOFF_MIN`] to [`BACKOFF_MAX`], each try bounded by
//! [`CONNECT_TIMEOUT`], so a store that is away costs one quick error per
//! turn, not a hung thread.

use super::super::StoreError;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;
use tokio_postgres::{Client, NoTls, Statement};

pub const BACKOFF_MIN: Duration = Duration::from_millis(50);
pub const BACKOFF_MAX: Duration = Duration::from_secs(2);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest any one statement (or commit) may take before the store counts
/// as away.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Set on every connection. The relay's tables churn like a queue, so the
/// statistics a cached generic plan was made from (often an empty table at
/// start) say nothing of the table now: a generic plan then scans a heap of
/// dead rows for a handful of keys (measured: 0.84 ms against 0.12 ms a
/// claim, 7 % against 17 % of memory's accept rate). Statements stay
/// prepared (parsed once); each execution is planned for its arguments.
pub const SESSION: &str = "SET plan_cache_mode = force_custom_plan";

/// A URL with its password hidden, for messages and logs.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = rest.split_once('/').map_or((rest, ""), |(a, t)| (a, t));
    match authority.rsplit_once('@') {
        Some((user_info, host)) if user_info.contains(':') => {
            let user = user_info.split(':').next().unwrap_or("");
            let slash = if rest.contains('/') { "/" } else { "" };
            format!("{scheme}://{user}:***@{host}{slash}{tail}")
        }
        _ => url.to_owned(),
    }
}

pub struct Link {
    url: String,
    shown: String,
    runtime: tokio::runtime::Runtime,
    client: Option<Session>,
    backoff: Duration,
    next_try: Option<Instant>,
}

impl Link {
    pub fn new(url: &str) -> Result<Link, StoreError> {
        url.parse::<tokio_postgres::Config>()
            .map_err(|e| StoreError::Unavailable {
                url: redact(url),
                detail: format!("the URL does not parse: {e}"),
            })?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Unavailable {
                url: redact(url),
                detail: format!("no runtime for its connection: {e}"),
            })?;
        Ok(Link {
            url: url.to_owned(),
            shown: redact(url),
            runtime,
            client: None,
            backoff: BACKOFF_MIN,
            next_try: None,
        })
    }

    /// The URL as messages show it.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    pub fn unavailable(&self, detail: impl std::fmt::Display) -> StoreError {
        StoreError::Unavailable {
            url: self.shown.clone(),
            detail: detail.to_string(),
        }
    }

    /// Runs `work` on the connection (made first if there is none), within
    /// [`STATEMENT_TIMEOUT`]. A failure drops the connection, so the next
    /// call reconnects (after the backoff).
    pub fn run<T, F>(&mut self, work: F) -> Result<T, StoreError>
    where
        F: AsyncFnOnce(&mut Client) -> Result<T, tokio_postgres::Error>,
    {
        self.run_session(async move |s: &mut Session| work(&mut s.client).await)
    }

    /// [`Link::run`] with the connection's prepared statements at hand.
    pub fn run_session<T, F>(&mut self, work: F) -> Result<T, StoreError>
    where
        F: AsyncFnOnce(&mut Session) -> Result<T, tokio_postgres::Error>,
    {
        self.connect()?;
        let Some(session) = self.client.as_mut() else {
            return Err(self.unavailable("not connected"));
        };
        let outcome = self
            .runtime
            .block_on(async { tokio::time::timeout(STATEMENT_TIMEOUT, work(session)).await });
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                self.client = None;
                Err(self.unavailable(describe(&e)))
            }
            Err(_) => {
                self.client = None;
                Err(self.unavailable(format!(
                    "no answer within {} s",
                    STATEMENT_TIMEOUT.as_secs()
                )))
            }
        }
    }

    /// Whether a connection is open now.
    pub fn is_connected(&self) -> bool {
        self.client.as_ref().is_some_and(|s| !s.client.is_closed())
    }

    fn connect(&mut self) -> Result<(), StoreError> {
        if self.is_connected() {
            return Ok(());
        }
        self.client = None;
        let now = crate::server::clock::read_monotonic();
        if let Some(at) = self.next_try.filter(|at| *at > now) {
            return Err(self.unavailable(format!(
                "not connected; next try in {} ms",
                at.duration_since(now).as_millis()
            )));
        }
        let url = self.url.clone();
        let made = self.runtime.block_on(async move {
            let connecting = tokio_postgres::connect(&url, NoTls);
            match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
                Ok(Ok((client, connection))) => {
                    // Driven on this thread's runtime while a statement runs.
                    tokio::spawn(async move {
                        if let Err(e) = connection.await {
                            tracing::debug!(error = %e, "PostgreSQL connection ended");
                        }
                    });
                    match client.batch_execute(SESSION).await {
                        Ok(()) => Ok(client),
                        Err(e) => Err(describe(&e)),
                    }
                }
                Ok(Err(e)) => Err(describe(&e)),
                Err(_) => Err(format!(
                    "no connection within {} s",
                    CONNECT_TIMEOUT.as_secs()
                )),
            }
        });
        match made {
            Ok(client) => {
                self.client = Some(Session {
                    client,
                    prepared: BTreeMap::new(),
                });
                self.backoff = BACKOFF_MIN;
                self.next_try = None;
                Ok(())
            }
            Err(detail) => {
                self.next_try = Some(now + self.backoff);
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                Err(self.unavailable(detail))
            }
        }
    }
}

/// A connection and the statements prepared on it: a statement is parsed
/// and planned once per connection, not once per commit.
pub struct Session {
    pub client: Client,
    prepared: BTreeMap<&'static str, Statement>,
}

impl Session {
    /// `sqls` as statements prepared on this connection; the ones not
    /// prepared yet are prepared together (one round trip).
    pub async fn statements(
        &mut self,
        sqls: &[&'static str],
    ) -> Result<Vec<Statement>, tokio_postgres::Error> {
        let mut missing: Vec<&'static str> = sqls
            .iter()
            .copied()
            .filter(|s| !self.prepared.contains_key(s))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        let client = &self.client;
        let made =
            futures_util::future::try_join_all(missing.iter().map(|s| client.prepare(s))).await?;
        self.prepared.extend(missing.into_iter().zip(made));
        Ok(sqls
            .iter()
            .filter_map(|s| self.prepared.get(s).cloned())
            .collect())
    }
}

/// The error with its database message and SQLSTATE when there is one.
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_never_shows_in_messages() {
        assert_eq!(
            redact("postgres://relay:s3cret@db:5432/relay"),
            "postgres://relay:***@db:5432/relay"
        );
        assert_eq!(
            redact("postgres://relay@db/relay"),
            "postgres://relay@db/relay"
        );
        assert_eq!(redact("postgres://u:p@h"), "postgres://u:***@h");
    }

    #[test]
    fn an_unparsable_url_is_named_in_the_error() {
        let Err(e) = Link::new("postgres://u@h:notaport/db") else {
            panic!("a bad port must not parse");
        };
        let text = e.to_string();
        assert!(text.contains("postgres://u@h:notaport/db"), "{text}");
    }
}
