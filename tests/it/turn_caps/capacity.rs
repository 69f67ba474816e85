//! `turn.bps_capacity`: while the server relays more than it, a new
//! Allocate gets 486, or 300 Try Alternate with ALTERNATE-SERVER when
//! `turn.alternate_servers` names a sibling; what already relays keeps
//! going, and once the traffic stops and a measurement passes, new clients
//! get allocations again.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use stun::addr::MappedAddress;
use stun::attributes::ATTR_ALTERNATE_SERVER;
use stun::message::Message;

use super::flow::{Flow, PAYLOAD, pace, receive};
use super::{AT_CAP, CH, channel_to};
use crate::common::http::metric;
use crate::common::*;

/// Far below the 1.6 Mbit/s the test relays.
const CAPACITY: u64 = 400_000;
/// The longest the busy flow may run.
const BUSY_LIMIT: Duration = Duration::from_secs(15);
/// The server measures its rate about once a second; the first measurement
/// after traffic starts may take two.
const MEASURED: Duration = Duration::from_secs(6);

fn alternate_of(m: &Message) -> Option<SocketAddr> {
    let mut a = MappedAddress::default();
    a.get_from_as(m, ATTR_ALTERNATE_SERVER).ok()?;
    Some(SocketAddr::new(a.ip, a.port))
}

/// Runs a busy flow through one allocation and checks what a newcomer's
/// Allocate gets meanwhile (`refusal`: 486, or 300 naming `alternate`),
/// that the flow goes on, and that a newcomer succeeds once it stops.
async fn busy_then_quiet(alternate: Option<SocketAddr>) {
    let daemon = start_with_http(Config {
        bps_capacity: Some(CAPACITY),
        alternate_servers: alternate.into_iter().collect(),
        ..Config::allow_loopback()
    })
    .await;
    let name = if alternate.is_some() { "300" } else { "486" };
    let peer = peer_socket().await;
    let peer_addr = peer.local_addr().expect("peer address");
    let (client, _) = channel_to(&daemon, &format!("busy{name}"), peer_addr).await;
    let frame = channel_data(CH, &[7; PAYLOAD]);
    let flow = Flow::default();
    let mut newcomers = 0;
    // Every newcomer's socket stays open: a closed one's port could go to
    // the next newcomer, whose Allocate would then meet the allocation still
    // held for that address (437) instead of the capacity check.
    let mut kept = Vec::new();
    let mut newcomer = async |want: &dyn Fn(&Message) -> bool| -> Option<Message> {
        newcomers += 1;
        let mut c = daemon.client_for(&format!("new{name}-{newcomers}")).await;
        let answer = c.allocate().await;
        kept.push(c);
        Some(answer).filter(|m| want(m))
    };
    let check = async {
        // 1.6 Mbit/s relayed (twice the 800 kbit/s pace below).
        let refused = poll_for(MEASURED, async || {
            newcomer(&|m| error_code(m).is_some()).await
        })
        .await
        .unwrap_or_else(|| panic!("{name}: no Allocate was refused within {MEASURED:?}"));
        match alternate {
            Some(alt) => {
                expect_error(&refused, 300, "Allocate while over bps_capacity");
                assert_eq!(alternate_of(&refused), Some(alt), "ALTERNATE-SERVER");
            }
            None => expect_error(&refused, 486, "Allocate while over bps_capacity"),
        }
        let gauge = "natbridge_turn_relayed_bits_per_second";
        wait_until(
            MEASURED,
            "the relayed rate above capacity in /metrics",
            async || {
                metric(daemon.http, gauge)
                    .await
                    .is_some_and(|v| v > CAPACITY as f64)
            },
        )
        .await;
        if alternate.is_some() {
            let series = "natbridge_turn_try_alternate_total{reason=\"bandwidth\"}";
            wait_until(MEASURED, series, async || {
                metric(daemon.http, series).await.is_some_and(|v| v >= 1.0)
            })
            .await;
        }
        // The allocation that made the server busy still relays.
        let before = flow.packets.load(Relaxed);
        wait_until(MEASURED, "the busy flow still arrives", async || {
            flow.packets.load(Relaxed) >= before + 20
        })
        .await;
        flow.stop.store(true, Relaxed);
        // Quiet again: within a measurement or two, newcomers are welcome.
        poll_for(MEASURED, async || {
            newcomer(&|m| error_code(m).is_none()).await
        })
        .await
        .unwrap_or_else(|| panic!("{name}: Allocate still refused after the traffic stopped"));
    };
    let sock = client.sock();
    let (_, _, ()) = tokio::join!(
        pace(sock, daemon.addr, &frame, 2 * AT_CAP, BUSY_LIMIT, &flow),
        receive(&peer, 0, &flow, BUSY_LIMIT + Duration::from_secs(3)),
        check,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_bps_capacity_new_allocations_get_486_or_300_until_it_is_quiet() {
    let sibling: SocketAddr = "192.0.2.7:3478".parse().expect("sibling address");
    tokio::join!(busy_then_quiet(None), busy_then_quiet(Some(sibling)));
}
