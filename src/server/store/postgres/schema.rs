//! The tables replicas share, created once under an advisory lock so that
//! replicas starting together do not race.
//!
//! - `relay_meta`: one row, the schema version, the epoch (relay time 0 as a
//!   unix millisecond) and the job-handle key, so every replica reads the
//!   same clock origin and signs the same status URLs;
//! - `relay_serial_blocks`: a sequence handing each starting replica its own
//!   block of job serials, so ids never repeat across restarts or replicas;
//! - `relay_blocks`: who holds each block, under a lease like a job's: a
//!   replica that adopts a job from a later block (the relay then continues
//!   its serials from there) must first take that block from its dead owner;
//! - `relay_jobs`: unfinished jobs, with their route, `owner` and
//!   `lease_until` (the visibility timeout a live owner keeps renewing);
//! - `relay_keys`: one row per idempotency key (unique across replicas): a
//!   claim while its job runs, the replay record once it succeeded, and
//!   the job's route;
//! - `relay_letters`: the dead letters, with their route, the replica
//!   holding each and whether another replica asked it to redrive one
//!   (`redrive_asked`).
//!
//! A route is kept by name (replicas may list `[[relay.routes]]` in other
//! orders, or not all of them); `''` is the default route, what rows of
//! version 1 hold.
//!
//! `relay_jobs` and `relay_keys` churn like a queue (each job's row is
//! inserted, updated and deleted within moments), so they leave room on
//! each page for updates that need no new index entry (`fillfactor`), and
//! are vacuumed after a fixed number of dead rows rather than a fraction
//! of a table that is nearly empty: otherwise every look-up wades through
//! dead rows. Expired replays are swept by each replica's keeper.
//!
//! Times are relay `Time` in nanoseconds since the epoch, except leases,
//! which use the database's own clock (`now()`), the one clock every
//! replica shares.

/// The schema this build reads and writes. 2: jobs, keys and letters name
/// their route.
pub const VERSION: i32 = 2;

/// Serials per block: a replica's run accepts at most this many jobs
/// before it must restart to take a new block.
pub const BLOCK: u64 = 1 << 22;

/// Advisory lock key serialising schema creation (any constant will do).
pub const CREATE_LOCK: i64 = 0x0072_656c_6179;

pub const CREATE: &str = "
CREATE TABLE IF NOT EXISTS relay_meta (
    id            int PRIMARY KEY CHECK (id = 1),
    version       int NOT NULL,
    epoch_unix_ms bigint NOT NULL,
    handle_key    bytea NOT NULL
);
CREATE SEQUENCE IF NOT EXISTS relay_serial_blocks MINVALUE 0 START 0 MAXVALUE 1023 NO CYCLE;
CREATE TABLE IF NOT EXISTS relay_blocks (
    block       bigint PRIMARY KEY,
    owner       text NOT NULL,
    lease_until timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS relay_jobs (
    serial      bigint PRIMARY KEY,
    id          bigint NOT NULL,
    key         text,
    client      bigint NOT NULL,
    fingerprint bigint NOT NULL,
    payload     bytea NOT NULL,
    accepted_at bigint NOT NULL,
    redrives    int NOT NULL,
    attempts    int NOT NULL DEFAULT 0,
    owner       text,
    lease_until timestamptz,
    route       text NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS relay_jobs_owner ON relay_jobs (owner);
CREATE INDEX IF NOT EXISTS relay_jobs_lease ON relay_jobs (lease_until);
CREATE TABLE IF NOT EXISTS relay_keys (
    key         text PRIMARY KEY,
    fingerprint bigint NOT NULL,
    serial      bigint,
    id          bigint,
    owner       text NOT NULL,
    claimed_at  timestamptz NOT NULL DEFAULT now(),
    response    bytea,
    finished_at bigint,
    expires_at  bigint,
    route       text NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS relay_letters (
    serial        bigint PRIMARY KEY,
    id            bigint NOT NULL,
    key           text,
    client        bigint NOT NULL,
    fingerprint   bigint NOT NULL,
    payload       bytea NOT NULL,
    attempts      int NOT NULL,
    reason        text NOT NULL,
    last_error    text NOT NULL,
    accepted_at   bigint NOT NULL,
    dead_at       bigint NOT NULL,
    redrives      int NOT NULL,
    late_attempt  int,
    late_at       bigint,
    late_response bytea,
    late_count    int,
    owner         text,
    lease_until   timestamptz,
    redrive_asked boolean NOT NULL DEFAULT false,
    route         text NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS relay_letters_asked ON relay_letters (owner) WHERE redrive_asked;
CREATE INDEX IF NOT EXISTS relay_keys_expiry ON relay_keys (expires_at);
CREATE OR REPLACE FUNCTION relay_refuse(why text) RETURNS int LANGUAGE plpgsql AS $f$
BEGIN
    RAISE EXCEPTION '%', why USING ERRCODE = 'unique_violation';
END $f$;
DO $$ BEGIN
    -- Only when not yet set: the lock it takes would queue every replica's
    -- statements behind it (and behind a vacuum it waits for).
    IF NOT EXISTS (SELECT 1 FROM pg_class WHERE oid = 'relay_jobs'::regclass
                   AND reloptions @> ARRAY['fillfactor=80']) THEN
        ALTER TABLE relay_jobs SET (fillfactor = 80, autovacuum_vacuum_scale_factor = 0,
            autovacuum_vacuum_threshold = 2000, autovacuum_vacuum_cost_delay = 0,
            autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 2000);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_class WHERE oid = 'relay_keys'::regclass
                   AND reloptions @> ARRAY['fillfactor=80']) THEN
        ALTER TABLE relay_keys SET (fillfactor = 80, autovacuum_vacuum_scale_factor = 0.02,
            autovacuum_vacuum_cost_delay = 0);
    END IF;
END $$;
";

/// Version 1 to 2, in place, under the creation lock: a route per job, key
/// and letter, `''` (the default route) for the rows already there, which
/// version 1 ran on it.
pub const UPGRADE_TO_2: &str = "
ALTER TABLE relay_jobs ADD COLUMN IF NOT EXISTS route text NOT NULL DEFAULT '';
ALTER TABLE relay_keys ADD COLUMN IF NOT EXISTS route text NOT NULL DEFAULT '';
ALTER TABLE relay_letters ADD COLUMN IF NOT EXISTS route text NOT NULL DEFAULT '';
UPDATE relay_meta SET version = 2 WHERE id = 1 AND version < 2;
";
