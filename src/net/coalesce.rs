//! Wake-up coalescing for the UDP workers.
//!
//! Media arrives as a steady trickle: at a few thousand packets a second a
//! worker finds one packet per wake-up, and going to sleep in `epoll_wait`
//! and being woken again costs far more than relaying the packet (on a VM,
//! about three quarters of the server's CPU per packet). So once a worker has
//! handled packets and is about to sleep, it first waits a short, fixed time
//! (`turn.batch_delay_us`) and then takes everything that arrived meanwhile
//! in one wake-up. While traffic flows a packet waits at most that long; a
//! worker that handled nothing since its last sleep blocks at once, so an
//! idle server does not wake up on its own.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

thread_local! {
    /// Datagrams this worker thread handled since it last parked.
    static HANDLED: Cell<u32> = const { Cell::new(0) };
}

/// The delay, shared by every worker and changed by a reload.
#[derive(Debug, Clone, Default)]
pub struct BatchDelay(Arc<AtomicU32>);

impl BatchDelay {
    pub fn new(micros: u32) -> BatchDelay {
        BatchDelay(Arc::new(AtomicU32::new(micros)))
    }

    pub fn set(&self, micros: u32) {
        self.0.store(micros, Ordering::Relaxed);
    }

    pub fn micros(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }

    /// Runs on the worker thread just before its runtime parks.
    pub fn before_park(&self) {
        if let Some(delay) = self.take_delay() {
            std::thread::sleep(delay);
        }
    }

    /// The wait before this thread parks: the delay if it handled datagrams
    /// since it last parked (and the delay is on), else none. Resets the
    /// count. Separate from the sleep so a test checks the rule without
    /// timing a sleep.
    fn take_delay(&self) -> Option<Duration> {
        let handled = HANDLED.with(|h| h.replace(0));
        let micros = self.micros();
        (handled > 0 && micros > 0).then(|| Duration::from_micros(u64::from(micros)))
    }
}

/// Counts one datagram handled by this worker thread.
pub fn note_datagram() {
    HANDLED.with(|h| h.set(h.get().saturating_add(1)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn sleeps_only_after_traffic() {
        // The rule, checked without a clock (a busy machine cannot make it
        // flake).
        let delay = BatchDelay::new(200_000);
        assert_eq!(delay.take_delay(), None, "idle: no delay");
        note_datagram();
        assert_eq!(
            delay.take_delay(),
            Some(Duration::from_millis(200)),
            "after traffic: the delay"
        );
        assert_eq!(delay.take_delay(), None, "counter reset");
        delay.set(0);
        note_datagram();
        assert_eq!(delay.take_delay(), None, "0 turns it off");

        // before_park sleeps it: only a lower bound, which load can only
        // make longer.
        delay.set(20_000);
        note_datagram();
        let t = Instant::now();
        delay.before_park();
        assert!(t.elapsed() >= Duration::from_millis(20), "the sleep");
        assert_eq!(delay.take_delay(), None, "before_park reset the count");
    }
}
