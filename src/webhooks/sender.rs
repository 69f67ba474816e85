//! The task that delivers queued events: up to `MAX_IN_FLIGHT` at once (each
//! from a different lane, see queue.rs), each to every endpoint, retried
//! with exponential backoff while a retry can help.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use rand::RngExt;
use tokio::sync::Semaphore;

use super::client::{self, Answer, Endpoint};
use super::queue::Item;
use super::{Settings, Webhooks, sign, unix_now};

/// Events being delivered at once. Bounds the sockets and tasks a slow or
/// dead receiver can tie up; rooms beyond it wait their turn in the queue.
const MAX_IN_FLIGHT: usize = 32;

/// What to do after one try.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Delivered,
    /// Trying again can help: the network failed, the receiver is
    /// overloaded or broken for now (5xx), timed out reading (408) or asks
    /// to slow down (429).
    Retry,
    /// The receiver understood and refused (other 4xx), or answered
    /// something natbridge does not follow (3xx): the same request would
    /// get the same answer, so retrying only adds load.
    GiveUp,
}

fn verdict(answer: &Answer) -> Verdict {
    match answer {
        Answer::Status(200..=299) => Verdict::Delivered,
        Answer::Status(408 | 429 | 500..=599) | Answer::Failed(_) => Verdict::Retry,
        Answer::Status(_) => Verdict::GiveUp,
    }
}

/// The pause before try `attempt + 1`: base doubled per try, capped, then
/// shortened by up to half at random, so that rooms that failed together
/// do not all retry in the same instant.
fn backoff(settings: &Settings, attempt: u32) -> Duration {
    let doubled = settings
        .backoff_base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let full = doubled.min(settings.backoff_max);
    let half = full / 2;
    half + half.mul_f64(rand::rng().random::<f64>())
}

pub(super) async fn run(hooks: Arc<Webhooks>) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (key, item) = loop {
            if let Some(next) = hooks.take() {
                break next;
            }
            // notify_one keeps a wake-up that comes before this wait.
            hooks.wake.notified().await;
        };
        let hooks = hooks.clone();
        tokio::spawn(async move {
            let settings = hooks.settings();
            let delivered = deliver(&hooks, &settings, &item).await;
            let outcome = match delivered {
                _ if settings.endpoints.is_empty() => &hooks.stats.dropped,
                true => &hooks.stats.delivered,
                false => &hooks.stats.failed,
            };
            outcome.fetch_add(1, Relaxed);
            hooks.finish(&key, item.cost());
            drop(slot);
        });
    }
}

/// Sends `item` to every endpoint; true when every one took it.
async fn deliver(hooks: &Webhooks, settings: &Settings, item: &Item) -> bool {
    let tries = settings
        .endpoints
        .iter()
        .map(|endpoint| deliver_to(hooks, settings, endpoint, item));
    futures_util::future::join_all(tries)
        .await
        .into_iter()
        .all(|ok| ok)
}

async fn deliver_to(hooks: &Webhooks, settings: &Settings, to: &Endpoint, item: &Item) -> bool {
    for attempt in 1..=settings.max_attempts {
        // Signed at each try: a retry minutes later must not look like a
        // replay to a receiver that checks the timestamp.
        let signature = sign::signature(&settings.secret, unix_now(), &item.body);
        let headers = [
            (sign::HEADER, signature),
            ("natbridge-event-id", item.id.clone()),
        ];
        let answer = client::post(to, &headers, item.body.clone(), settings.timeout).await;
        let last = attempt == settings.max_attempts;
        match (verdict(&answer), last) {
            (Verdict::Delivered, _) => return true,
            (Verdict::GiveUp, _) | (Verdict::Retry, true) => {
                tracing::warn!(
                    url = %to.url,
                    event = item.kind,
                    id = %item.id,
                    attempts = attempt,
                    answer = ?answer,
                    "webhook not delivered; giving up on this event"
                );
                return false;
            }
            (Verdict::Retry, false) => {
                hooks.stats.retries.fetch_add(1, Relaxed);
                let pause = backoff(settings, attempt);
                tracing::debug!(url = %to.url, id = %item.id, attempt, answer = ?answer, ?pause, "webhook will be retried");
                tokio::time::sleep(pause).await;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_only_where_a_retry_can_help() {
        assert_eq!(verdict(&Answer::Status(204)), Verdict::Delivered);
        for s in [500, 502, 503, 408, 429] {
            assert_eq!(verdict(&Answer::Status(s)), Verdict::Retry, "{s}");
        }
        assert_eq!(verdict(&Answer::Failed("reset".into())), Verdict::Retry);
        for s in [301, 400, 401, 403, 404, 410] {
            assert_eq!(verdict(&Answer::Status(s)), Verdict::GiveUp, "{s}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_below() {
        let s = Settings {
            endpoints: Vec::new(),
            secret: Vec::new(),
            timeout: Duration::from_secs(1),
            max_attempts: 30,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_millis(1000),
            flush_timeout: Duration::ZERO,
        };
        for (attempt, full) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1000),
            (30, 1000),
        ] {
            let d = backoff(&s, attempt).as_millis() as u64;
            assert!((full / 2..=full).contains(&d), "try {attempt}: {d} ms");
        }
    }
}
