//! A webhook receiver for the tests: an HTTP/1.1 server on 127.0.0.1 that
//! records every request and answers with scripted statuses (200 once the
//! script runs out), or holds every request unanswered while stalled.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// One request as it came, and the status it got.
#[derive(Debug, Clone)]
pub struct Hook {
    pub signature: Option<String>,
    pub event_id: Option<String>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    pub status: u16,
}

impl Hook {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a webhook body is JSON")
    }
}

#[derive(Default)]
struct Shared {
    hooks: Mutex<Vec<Hook>>,
    answers: Mutex<VecDeque<u16>>,
    stalled: AtomicBool,
}

pub struct HookReceiver {
    pub url: String,
    shared: Arc<Shared>,
}

impl HookReceiver {
    /// Answers `answers` in turn to the first requests, 200 after them.
    pub async fn start(answers: &[u16]) -> HookReceiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the webhook receiver");
        let addr: SocketAddr = listener.local_addr().expect("receiver address");
        let shared = Arc::new(Shared::default());
        shared
            .answers
            .lock()
            .unwrap()
            .extend(answers.iter().copied());
        let sh = shared.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let sh = sh.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| answer(sh.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        HookReceiver {
            url: format!("http://{addr}/hooks/natbridge?source=test"),
            shared,
        }
    }

    /// From now on requests get no answer at all.
    pub fn stall(&self) {
        self.shared.stalled.store(true, Ordering::SeqCst);
    }

    /// Every request so far, in the order they came.
    pub fn hooks(&self) -> Vec<Hook> {
        self.shared.hooks.lock().unwrap().clone()
    }

    /// The events answered 2xx, in order.
    pub fn delivered(&self) -> Vec<Value> {
        self.hooks()
            .iter()
            .filter(|h| (200..300).contains(&h.status))
            .map(Hook::json)
            .collect()
    }

    /// Waits until `n` events were answered 2xx; panics after `within`.
    pub async fn wait_delivered(&self, n: usize, within: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let got = self.delivered();
            if got.len() >= n {
                return got;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("{} of {n} webhook events arrived: {got:#?}", got.len());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn answer(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (signature, event_id, content_type) = (
        header("natbridge-signature"),
        header("natbridge-event-id"),
        header("content-type"),
    );
    let body = req.into_body().collect().await?.to_bytes().to_vec();
    if shared.stalled.load(Ordering::SeqCst) {
        // Longer than any test: the daemon's timeout ends it.
        tokio::time::sleep(Duration::from_secs(600)).await;
    }
    let status = shared.answers.lock().unwrap().pop_front().unwrap_or(200);
    shared.hooks.lock().unwrap().push(Hook {
        signature,
        event_id,
        content_type,
        body,
        status,
    });
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
    Ok(response)
}
