//! Waiting for a condition instead of sleeping a fixed time: a test waits as
//! long as the daemon needs, up to a deadline generous for a loaded 2-core
//! machine, and fails naming what did not come about.

use std::time::{Duration, Instant};

/// How often a condition is checked.
pub const POLL: Duration = Duration::from_millis(50);

/// Checks `cond` every [`POLL`] until it holds (true) or `within` has passed
/// (false, after one last check).
pub async fn eventually(within: Duration, mut cond: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Like [`eventually`], but a condition that does not come about within
/// `within` fails the test, saying `what` was awaited.
pub async fn wait_until(within: Duration, what: &str, cond: impl AsyncFnMut() -> bool) {
    if !eventually(within, cond).await {
        panic!("{what}: not within {within:?}");
    }
}
