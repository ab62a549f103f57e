//! One loopback address per simulated client, so that the relay tells the
//! clients apart as the simulator does.
//!
//! The live relay keys its per-client rate limit on the peer's address
//! (something a client cannot choose); the simulated relay keys it on the
//! client's id. From 127.0.0.1 every load-generator client would be one
//! peer sharing one bucket. On Linux all of 127.0.0.0/8 is loopback, so
//! against a 127.x.y.z target each client's connections (its sends and its
//! status polls) leave from an address of its own, 127.1.0.1 on, with a
//! connection pool of its own. Both are bounded: at most [`PEERS_MAX`]
//! addresses (clients beyond share them, client n with client
//! n + [`PEERS_MAX`]) and [`IDLE_PER_PEER_MAX`] idle connections each.
//! Where the addresses cannot be bound (not Linux, or a target elsewhere),
//! every client shares one pool from the default address, as before.

use crate::server::client::HttpClient;
use crate::sim::clients::ClientsConfig;
use std::net::{IpAddr, Ipv4Addr};

/// Distinct source addresses at most (127.1.0.1 to 127.1.4.0).
pub const PEERS_MAX: usize = 1024;
/// Idle connections each peer's pool keeps (a client rarely has more than
/// a send and a poll open at once); with [`PEERS_MAX`], 2,048 in all.
pub const IDLE_PER_PEER_MAX: usize = 2;
/// The first client's address; client n's is this + n.
const FIRST: Ipv4Addr = Ipv4Addr::new(127, 1, 0, 1);
/// Largest answer read.
const BODY_BYTES_MAX: usize = 1024 * 1024;

/// The HTTP clients the load generator's clients send through.
pub struct Peers {
    /// One per address, or a single shared one.
    clients: Vec<HttpClient>,
    /// Per population, the dense index of its first client.
    offsets: Vec<u64>,
}

impl Peers {
    /// A peer per client of `populations` when `target_base` is an IPv4
    /// loopback URL and this host lets the addresses be bound; else one
    /// shared pool.
    pub fn new(populations: &[ClientsConfig], target_base: &str) -> Peers {
        let offsets = offsets(populations);
        let clients_total = populations.iter().map(members).sum::<u64>();
        let wanted = clients_total.min(PEERS_MAX as u64) as usize;
        if wanted <= 1 || !ipv4_loopback(target_base) || !can_bind(FIRST) {
            return Peers::shared(offsets);
        }
        let clients = (0..wanted)
            .map(|i| HttpClient::peer(IpAddr::V4(address(i)), IDLE_PER_PEER_MAX, BODY_BYTES_MAX))
            .collect();
        Peers { clients, offsets }
    }

    fn shared(offsets: Vec<u64>) -> Peers {
        Peers {
            clients: vec![HttpClient::new(BODY_BYTES_MAX)],
            offsets,
        }
    }

    /// How many distinct peers the relay sees.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// The pool of client `client` (the simulator's id: population in the
    /// high 32 bits, member in the low).
    pub fn of(&self, client: u64) -> &HttpClient {
        let i = self.index(client) % self.clients.len() as u64;
        &self.clients[i as usize]
    }

    /// The source address client `client` sends from, if it has its own.
    pub fn address_of(&self, client: u64) -> Option<Ipv4Addr> {
        (self.clients.len() > 1)
            .then(|| address((self.index(client) % self.clients.len() as u64) as usize))
    }

    fn index(&self, client: u64) -> u64 {
        let source = (client >> 32) as usize;
        let member = client & u64::from(u32::MAX);
        self.offsets.get(source).copied().unwrap_or(0) + member
    }
}

/// Client ids a population uses.
fn members(c: &ClientsConfig) -> u64 {
    match c {
        ClientsConfig::OpenLoop { clients, .. } => u64::from((*clients).max(1)),
        ClientsConfig::ClosedLoop { population, .. } => u64::from(*population),
    }
}

fn offsets(populations: &[ClientsConfig]) -> Vec<u64> {
    populations
        .iter()
        .scan(0u64, |next, c| {
            let first = *next;
            *next += members(c);
            Some(first)
        })
        .collect()
}

/// Address `i` (< [`PEERS_MAX`]), counted from [`FIRST`].
fn address(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(FIRST) + i as u32)
}

fn ipv4_loopback(base: &str) -> bool {
    base.parse::<hyper::Uri>()
        .ok()
        .and_then(|u| u.host().and_then(|h| h.parse::<Ipv4Addr>().ok()))
        .is_some_and(|ip| ip.is_loopback())
}

/// Whether `ip` can be a source address here (all of 127/8 on Linux,
/// only 127.0.0.1 elsewhere).
fn can_bind(ip: Ipv4Addr) -> bool {
    std::net::TcpListener::bind((ip, 0)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::clients::ClientRetryConfig;

    fn open(clients: u32) -> ClientsConfig {
        ClientsConfig::OpenLoop {
            per_s: Some(1.0),
            schedule: vec![],
            requests_max: Some(1),
            clients,
            retry: ClientRetryConfig::default(),
        }
    }

    fn closed(population: u32) -> ClientsConfig {
        ClientsConfig::ClosedLoop {
            population,
            think_ms: 0.0,
            requests_per_client: 1,
            start_spread_ms: 0.0,
            retry: ClientRetryConfig::default(),
        }
    }

    #[test]
    fn every_client_of_every_population_has_an_address_of_its_own() {
        if !can_bind(FIRST) {
            eprintln!("skipped: 127.1.0.1 cannot be bound on this host");
            return;
        }
        let peers = Peers::new(&[open(3), closed(2)], "http://127.0.0.1:3000");
        assert_eq!(peers.len(), 5);
        let ids = [0, 1, 2, 1 << 32, (1 << 32) | 1];
        let addresses: std::collections::BTreeSet<_> =
            ids.iter().map(|&id| peers.address_of(id)).collect();
        assert_eq!(addresses.len(), 5, "{addresses:?}");
        assert_eq!(peers.address_of(1 << 32), Some(Ipv4Addr::new(127, 1, 0, 4)));
        assert_eq!(peers.address_of(2), peers.address_of(2), "stable");
    }

    #[test]
    fn addresses_are_bounded_and_shared_beyond_the_bound() {
        if !can_bind(FIRST) {
            eprintln!("skipped: 127.1.0.1 cannot be bound on this host");
            return;
        }
        let many = PEERS_MAX as u32 + 10;
        let peers = Peers::new(&[open(many)], "http://127.0.0.1:3000");
        assert_eq!(peers.len(), PEERS_MAX);
        assert_eq!(peers.address_of(3), peers.address_of(PEERS_MAX as u64 + 3));
        assert_eq!(
            peers.address_of(PEERS_MAX as u64 - 1),
            Some(Ipv4Addr::new(127, 1, 4, 0))
        );
    }

    #[test]
    fn one_shared_pool_unless_the_target_is_ipv4_loopback() {
        for base in [
            "http://[::1]:3000",
            "http://localhost:3000",
            "http://10.0.0.1:80",
        ] {
            let peers = Peers::new(&[open(10)], base);
            assert_eq!(peers.len(), 1, "{base}");
            assert_eq!(peers.address_of(3), None);
        }
        assert_eq!(Peers::new(&[open(1)], "http://127.0.0.1:3000").len(), 1);
    }
}
