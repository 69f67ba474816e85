//! Waiting for a condition instead of sleeping a fixed time: a test waits as
//! long as the daemon needs, up to a deadline generous for a loaded 2-core
//! machine, and fails naming what did not come about.
//!
//! A test still sleeps a fixed time only where the wait is the point (past
//! a timeout it checks, a pause between two writes) or where nothing
//! observable marks the condition; the sleep then says why.

use std::time::{Duration, Instant};

/// How often a condition is checked.
pub const POLL: Duration = Duration::from_millis(50);

/// Runs `probe` every [`POLL`] until it returns a value (Some) or `within`
/// has passed (None, after one last try).
pub async fn poll_for<T>(within: Duration, mut probe: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = probe().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Checks `cond` every [`POLL`] until it holds (true) or `within` has passed
/// (false, after one last check).
pub async fn eventually(within: Duration, mut cond: impl AsyncFnMut() -> bool) -> bool {
    poll_for(within, async || cond().await.then_some(()))
        .await
        .is_some()
}

/// Like [`eventually`], but a condition that does not come about within
/// `within` fails the test, saying `what` was awaited.
pub async fn wait_until(within: Duration, what: &str, cond: impl AsyncFnMut() -> bool) {
    if !eventually(within, cond).await {
        panic!("{what}: not within {within:?}");
    }
}
