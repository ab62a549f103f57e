//! A cap on the connections one peer address holds open at once.
//!
//! The global cap (`connections_max`) keeps the process within its
//! descriptors, but one client that opens that many connections still
//! locks every other client out. Counting open connections by address lets
//! the listener close a peer's connection beyond its share at once and keep
//! room for everyone else. An address is a peer: clients behind one proxy
//! or NAT share its count, which is why the cap is off unless set.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// Open connections per peer address, at most `max` each. The map holds
/// only addresses with a connection open, so it is bounded by the global
/// connection cap; a B-tree, as peers choose the keys (no hash to flood).
#[derive(Debug)]
pub struct PeerCap {
    max: Option<usize>,
    open: Mutex<BTreeMap<IpAddr, usize>>,
}

/// One connection's place in its peer's count, given back when dropped
/// (also when its task is aborted).
#[derive(Debug)]
pub struct PeerSlot {
    held: Option<(Arc<PeerCap>, IpAddr)>,
}

impl PeerCap {
    /// `None`: no cap, nothing counted.
    pub fn new(max: Option<usize>) -> Arc<PeerCap> {
        Arc::new(PeerCap {
            max,
            open: Mutex::new(BTreeMap::new()),
        })
    }

    /// A slot for one more connection from `ip`, or the count it already
    /// holds when that is the cap. IPv4 addresses mapped into IPv6 count
    /// as the IPv4 address they are.
    pub fn try_open(self: &Arc<PeerCap>, ip: IpAddr) -> Result<PeerSlot, usize> {
        let Some(max) = self.max else {
            return Ok(PeerSlot { held: None });
        };
        let ip = ip.to_canonical();
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let n = open.entry(ip).or_insert(0);
        if *n >= max {
            return Err(*n);
        }
        *n += 1;
        Ok(PeerSlot {
            held: Some((self.clone(), ip)),
        })
    }

    /// Connections `ip` holds open now.
    pub fn open_from(&self, ip: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.get(&ip.to_canonical()).copied().unwrap_or(0)
    }

    /// Peers with a connection open now.
    pub fn peers(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn close(&self, ip: IpAddr) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = open.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&ip);
            }
        }
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        if let Some((cap, ip)) = self.held.take() {
            cap.close(ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn a_peer_gets_max_slots_and_others_are_not_affected() {
        let cap = PeerCap::new(Some(2));
        let a = [cap.try_open(ip("10.0.0.1")), cap.try_open(ip("10.0.0.1"))];
        assert!(a.iter().all(Result::is_ok));
        assert_eq!(cap.try_open(ip("10.0.0.1")).err(), Some(2));
        assert!(cap.try_open(ip("10.0.0.2")).is_ok(), "another peer");
        assert_eq!(cap.peers(), 1, "the other slot was dropped at once");
        drop(a);
        assert_eq!((cap.peers(), cap.open_from(ip("10.0.0.1"))), (0, 0));
        assert!(cap.try_open(ip("10.0.0.1")).is_ok(), "slots come back");
    }

    #[test]
    fn a_mapped_ipv4_address_is_the_same_peer() {
        let cap = PeerCap::new(Some(1));
        let _held = cap.try_open(ip("192.0.2.7")).expect("a slot");
        assert_eq!(cap.try_open(ip("::ffff:192.0.2.7")).err(), Some(1));
        assert_eq!(cap.open_from(ip("::ffff:192.0.2.7")), 1);
    }

    #[test]
    fn without_a_cap_nothing_is_counted() {
        let cap = PeerCap::new(None);
        let held: Vec<_> = (0..1000).map(|_| cap.try_open(ip("10.0.0.1"))).collect();
        assert!(held.iter().all(Result::is_ok));
        assert_eq!(cap.peers(), 0);
    }
}
