//! Where the relay's clock sits on the load generator's.
//!
//! A job's end is learnt by polling its status, some milliseconds after it
//! happened; the status says when it happened on the relay's clock
//! (milliseconds since the relay started). To measure latency to the end
//! and not to the poll that saw it, that time is moved onto the load
//! generator's clock. Every accepted send bounds the offset: the relay
//! accepted it after the request left and before its answer came back, so
//! `local = relay + offset` with `offset` in `[sent − accepted, answered −
//! accepted]`. The tightest bounds over all sends win (as NTP's
//! offset filter keeps the sample with the shortest round trip).

/// The offset's bounds so far, in milliseconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClockOffset {
    low_ms: Option<f64>,
    high_ms: Option<f64>,
}

impl ClockOffset {
    /// A send that left at `sent_ms` and was answered at `answered_ms`
    /// (the load generator's clock) was accepted at `accepted_ms` (the relay's).
    pub fn observe(&mut self, sent_ms: f64, answered_ms: f64, accepted_ms: f64) {
        let (low, high) = (sent_ms - accepted_ms, answered_ms - accepted_ms);
        self.low_ms = Some(self.low_ms.map_or(low, |l| l.max(low)));
        self.high_ms = Some(self.high_ms.map_or(high, |h| h.min(high)));
    }

    /// The best estimate: the upper bound (the relay answers right after it
    /// accepts), unless the bounds crossed (a clock stepped), then the lower.
    pub fn offset_ms(&self) -> Option<f64> {
        match (self.low_ms, self.high_ms) {
            (Some(l), Some(h)) => Some(if h >= l { h } else { l }),
            _ => None,
        }
    }

    /// The width of the bounds: how well the offset is known.
    pub fn uncertainty_ms(&self) -> Option<f64> {
        Some((self.high_ms? - self.low_ms?).max(0.0))
    }

    /// `relay_ms` on the load generator's clock.
    pub fn local_ms(&self, relay_ms: f64) -> Option<f64> {
        Some(relay_ms + self.offset_ms()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tightest_round_trip_bounds_the_offset() {
        let mut o = ClockOffset::default();
        assert_eq!(o.offset_ms(), None);
        // The relay's clock started 100 ms after ours: accepted at 5 is our 105.
        o.observe(104.0, 110.0, 5.0);
        o.observe(200.5, 201.0, 100.0);
        assert_eq!(o.offset_ms(), Some(101.0));
        assert_eq!(o.uncertainty_ms(), Some(0.5));
        assert_eq!(o.local_ms(50.0), Some(151.0));
    }

    #[test]
    fn crossed_bounds_fall_back_to_the_lower() {
        let mut o = ClockOffset::default();
        o.observe(10.0, 11.0, 0.0);
        o.observe(30.0, 31.0, 10.0);
        assert_eq!(o.offset_ms(), Some(20.0));
    }
}
