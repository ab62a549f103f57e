//! Part (a): many clients racing to update one record.
//!
//! This is the model of the AWS Architecture Blog study "Exponential Backoff
//! and Jitter": it shows what backoff and jitter do to contention itself,
//! before any queue or relay is involved. N clients each read a record and
//! then write it back conditionally on the version they read (optimistic
//! concurrency). A write succeeds iff the record still has that version
//! when the write reaches the store, so every success makes all writes in
//! flight fail. A client whose write fails sleeps its backoff and starts
//! over with a fresh read; it is done once a write succeeds.
//!
//! Every message (read request, read reply, write request, write reply)
//! takes |Normal(mean, sd)|, drawn from the sending client's own stream in
//! that order. Only two moments touch shared state, the read and the write
//! arriving at the store, so those are the only events: the replies and the
//! next request are folded into the delay to the next arrival. Events are
//! ordered by (time, insertion sequence), so equal times resolve the same
//! way on every run.
//!
//! A "call" is one write attempt; completion is when the last client
//! receives its success reply.

use super::options::ContentionOptions;
use super::strategy::Strategy;
use crate::relay::{Backoff, BackoffState};
use crate::rng::{Domain, Seed, Stream};
use rand::Rng;
use rand_distr::StandardNormal;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// What one run produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Write attempts by all clients (successful or not).
    pub calls: u64,
    /// When the last client learned of its success; `None` if some client
    /// gave up after the maximum number of writes.
    pub completion_ns: Option<u64>,
    /// Clients that gave up.
    pub clients_unfinished: u32,
}

/// One strategy's model, ready to run for any client count and seed.
#[derive(Clone, Debug)]
pub struct ContentionModel {
    backoff: Backoff,
    latency_ms_mean: f64,
    latency_ms_sd: f64,
    writes_per_client_max: u32,
}

impl ContentionModel {
    /// Builds the model from validated options.
    pub fn new(strategy: Strategy, options: &ContentionOptions) -> ContentionModel {
        ContentionModel {
            backoff: Backoff::new(&options.backoff_config(strategy)),
            latency_ms_mean: options.latency_ms_mean,
            latency_ms_sd: options.latency_ms_sd,
            writes_per_client_max: options.writes_per_client_max,
        }
    }

    /// Simulates `clients` clients starting together at time zero; client
    /// `i` draws from stream `(seed, Experiment, i)`.
    pub fn run(&self, clients: u32, seed: Seed) -> Outcome {
        let mut world = World::new(self, clients, seed);
        while let Some(Reverse((now_ns, _, client))) = world.events.pop() {
            debug_assert!(now_ns >= world.now_ns, "time went backwards");
            world.now_ns = now_ns;
            let index = client as usize;
            match world.clients[index].next {
                Arrival::Read => world.read_arrives(index),
                Arrival::Write => world.write_arrives(index),
            }
        }
        world.outcome()
    }

    /// One message's latency in nanoseconds.
    fn message_ns(&self, rng: &mut Stream) -> u64 {
        let z: f64 = rng.sample(StandardNormal);
        let ms = self.latency_ms_mean + self.latency_ms_sd * z;
        crate::time::secs_to_nanos(ms.abs() / 1e3)
    }
}

/// Which of a client's messages reaches the store next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Arrival {
    Read,
    Write,
}

#[derive(Debug)]
struct Client {
    rng: Stream,
    next: Arrival,
    version_read: u64,
    failures: u32,
    backoff: BackoffState,
}

/// The store, the clients and the pending arrivals of one run. Each client
/// has at most one arrival pending, so the heap never holds more than N.
struct World<'m> {
    model: &'m ContentionModel,
    now_ns: u64,
    version: u64,
    clients: Vec<Client>,
    events: BinaryHeap<Reverse<(u64, u64, u32)>>,
    seq: u64,
    calls: u64,
    completion_ns: u64,
    clients_unfinished: u32,
}

impl<'m> World<'m> {
    fn new(model: &'m ContentionModel, clients: u32, seed: Seed) -> World<'m> {
        let mut world = World {
            model,
            now_ns: 0,
            version: 0,
            clients: Vec::with_capacity(clients as usize),
            events: BinaryHeap::with_capacity(clients as usize),
            seq: 0,
            calls: 0,
            completion_ns: 0,
            clients_unfinished: 0,
        };
        for i in 0..clients {
            world.clients.push(Client {
                rng: seed.stream(Domain::Experiment, u64::from(i)),
                next: Arrival::Read,
                version_read: 0,
                failures: 0,
                backoff: BackoffState::default(),
            });
            let request_ns = model.message_ns(&mut world.clients[i as usize].rng);
            world.schedule(i as usize, Arrival::Read, request_ns);
        }
        world
    }

    fn schedule(&mut self, client: usize, next: Arrival, at_ns: u64) {
        self.clients[client].next = next;
        self.seq += 1;
        // Client indices come from a u32 count, so the cast is lossless.
        self.events.push(Reverse((at_ns, self.seq, client as u32)));
    }

    /// The store answers the read with the current version; the reply and
    /// the client's conditional write then travel back.
    fn read_arrives(&mut self, client: usize) {
        let c = &mut self.clients[client];
        c.version_read = self.version;
        let reply_ns = self.model.message_ns(&mut c.rng);
        let request_ns = self.model.message_ns(&mut c.rng);
        let at_ns = self
            .now_ns
            .saturating_add(reply_ns)
            .saturating_add(request_ns);
        self.schedule(client, Arrival::Write, at_ns);
    }

    /// The store applies the write iff nobody wrote since this client read.
    fn write_arrives(&mut self, client: usize) {
        self.calls += 1;
        let model = self.model;
        let succeeded = self.clients[client].version_read == self.version;
        let c = &mut self.clients[client];
        let reply_at_ns = self.now_ns.saturating_add(model.message_ns(&mut c.rng));
        if succeeded {
            self.version += 1;
            self.completion_ns = self.completion_ns.max(reply_at_ns);
            return;
        }
        c.failures += 1;
        if c.failures >= model.writes_per_client_max {
            self.clients_unfinished += 1;
            return;
        }
        // The study sleeps base · 2^n after the n-th failure; our Backoff
        // computes base · multiplier^(retry - 1), so the n-th failure is
        // retry n + 1 (the first failure sleeps 2 · base, not base).
        let sleep_ns = model
            .backoff
            .delay_ns(c.failures + 1, &mut c.backoff, &mut c.rng);
        let request_ns = model.message_ns(&mut c.rng);
        let at_ns = reply_at_ns
            .saturating_add(sleep_ns)
            .saturating_add(request_ns);
        self.schedule(client, Arrival::Read, at_ns);
    }

    fn outcome(&self) -> Outcome {
        Outcome {
            calls: self.calls,
            completion_ns: (self.clients_unfinished == 0).then_some(self.completion_ns),
            clients_unfinished: self.clients_unfinished,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> ContentionOptions {
        ContentionOptions {
            strategies: Strategy::ALL.to_vec(),
            clients: vec![10],
            base_ms: 5.0,
            cap_ms: 2000.0,
            multiplier: 2.0,
            latency_ms_mean: 10.0,
            latency_ms_sd: 2.0,
            writes_per_client_max: 10_000,
        }
    }

    fn run(strategy: Strategy, clients: u32, seed: u64) -> Outcome {
        ContentionModel::new(strategy, &options()).run(clients, Seed(seed))
    }

    /// Seed 1 with the default options changed by `edit`.
    fn run_with(
        strategy: Strategy,
        clients: u32,
        edit: impl FnOnce(&mut ContentionOptions),
    ) -> Outcome {
        let mut o = options();
        edit(&mut o);
        ContentionModel::new(strategy, &o).run(clients, Seed(1))
    }

    #[test]
    fn one_client_writes_once_after_four_messages() {
        let outcome = run_with(Strategy::NoBackoff, 1, |o| o.latency_ms_sd = 0.0);
        assert_eq!(outcome.calls, 1);
        assert_eq!(outcome.completion_ns, Some(40_000_000));
    }

    #[test]
    fn every_client_succeeds_exactly_once() {
        for strategy in Strategy::ALL {
            let outcome = run(strategy, 25, 3);
            assert_eq!(outcome.clients_unfinished, 0, "{strategy:?}");
            // 25 successes, and each failure is a call too.
            assert!(outcome.calls >= 25, "{strategy:?}: {outcome:?}");
        }
    }

    #[test]
    fn same_seed_same_outcome_other_seed_other_outcome() {
        let a = run(Strategy::FullJitter, 30, 7);
        assert_eq!(a, run(Strategy::FullJitter, 30, 7));
        assert_ne!(a, run(Strategy::FullJitter, 30, 8));
    }

    #[test]
    fn clients_that_keep_failing_give_up_and_are_counted() {
        let outcome = run_with(Strategy::NoBackoff, 20, |o| o.writes_per_client_max = 2);
        assert!(outcome.clients_unfinished > 0, "{outcome:?}");
        assert_eq!(outcome.completion_ns, None);
        assert!(outcome.calls <= 40);
    }

    #[test]
    fn exponential_first_sleep_is_twice_base() {
        // Two clients with identical constant latency collide once; the
        // loser sleeps 2 · base = 10 ms, then needs four more messages.
        let outcome = run_with(Strategy::Exponential, 2, |o| o.latency_ms_sd = 0.0);
        assert_eq!(outcome.calls, 3);
        // success of the first at 40 ms; the loser: 40 + 10 + 40 = 90 ms.
        assert_eq!(outcome.completion_ns, Some(90_000_000));
    }
}
