//! Bugs planted on purpose, in this crate's own tests only, to show that
//! the swarm finds and shrinks them. Each is off unless a test turns it on
//! for its own thread, so other tests running beside it see the real code.

use std::cell::Cell;

/// A bug a pattern can be made to have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bug {
    /// The breaker stays open a thousand times its open period: a
    /// liveness bug.
    BreakerStaysOpen,
    /// The idempotency store forgets a key the moment its job succeeds, so
    /// a retry of the same key calls the downstream again: a safety bug.
    ForgetsSuccess,
}

thread_local! {
    static PLANTED: Cell<Option<Bug>> = const { Cell::new(None) };
}

/// Whether `bug` is planted on this thread.
pub fn active(bug: Bug) -> bool {
    PLANTED.with(|p| p.get() == Some(bug))
}

/// Runs `f` with `bug` planted on this thread.
pub fn with<R>(bug: Bug, f: impl FnOnce() -> R) -> R {
    struct Unplant;
    impl Drop for Unplant {
        fn drop(&mut self) {
            PLANTED.with(|p| p.set(None));
        }
    }
    PLANTED.with(|p| p.set(Some(bug)));
    let _unplant = Unplant;
    f()
}
