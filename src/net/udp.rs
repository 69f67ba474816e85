//! The UDP driver: each worker's SO_REUSEPORT listening sockets and its relay
//! sockets, read in batches (recvmmsg) into one buffer per worker that keeps
//! headroom for the ChannelData header, and handed to the worker's core.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;

use tokio::io::Interest;
use tokio::net::UdpSocket;

use crate::turn::wire::CHANNEL_HEADER_LEN;
use crate::turn::{ClientAddr, Now, RelayId, Transport};

use super::batch::BATCH;
use super::coalesce;
use super::sockets;
use super::worker::{State, WorkerState, process_commands};

/// Batches (of up to `batch::BATCH` datagrams) handled per socket wake-up
/// before yielding to the other sockets.
const BURST: usize = 4;

/// Binds `workers` sockets on every listen address. Done before the workers
/// start, so a port conflict fails the start-up with a clear error.
pub fn bind_listeners(
    listen: &[SocketAddr],
    workers: usize,
) -> io::Result<Vec<Vec<std::net::UdpSocket>>> {
    (0..workers)
        .map(|_| {
            listen
                .iter()
                .map(|addr| {
                    sockets::reuseport_udp(*addr).map_err(|e| {
                        io::Error::new(e.kind(), format!("cannot bind UDP {addr}: {e}"))
                    })
                })
                .collect()
        })
        .collect()
}

pub(super) async fn listen_loop(state: State, sock: Rc<UdpSocket>, listener: u16) {
    receive_loop(state, sock, |st, slot, len, from, now| {
        let client = ClientAddr {
            transport: Transport::Udp,
            addr: from,
            listener,
        };
        let WorkerState { core, relays, .. } = st;
        let bytes = &slot[CHANNEL_HEADER_LEN..CHANNEL_HEADER_LEN + len];
        if let Some(send) = core.handle_client(client, bytes, now)
            && let Some(relay) = relays.get(&send.relay)
        {
            let _ = relay.sender.send_to(send.payload, send.peer);
        }
    })
    .await
}

pub(super) async fn relay_loop(state: State, sock: Rc<UdpSocket>, relay: RelayId) {
    receive_loop(state, sock, |st, slot, len, peer, now| {
        let WorkerState {
            core,
            listeners,
            streams,
            ..
        } = st;
        let Some(out) = core.handle_peer(relay, peer, slot, len, now) else {
            return;
        };
        if out.client.transport.is_stream() {
            if let Some(s) = streams.get(&out.client) {
                s.send(slot[..out.len].to_vec());
            }
        } else if let Some(l) = listeners.get(usize::from(out.client.listener)) {
            let _ = l.send_to(&slot[..out.len], out.client.addr);
        }
    })
    .await
}

/// Reads `sock` in batches for as long as the task lives and hands every
/// datagram to `handle` (its slot, with the payload at CHANNEL_HEADER_LEN,
/// its length and its sender), then carries out what the core asked for.
async fn receive_loop(
    state: State,
    sock: Rc<UdpSocket>,
    mut handle: impl FnMut(&mut WorkerState, &mut [u8], usize, SocketAddr, Now),
) {
    let batch = state.borrow().batch.clone();
    let fd = sock.as_raw_fd();
    loop {
        if sock.readable().await.is_err() {
            continue;
        }
        for _ in 0..BURST {
            let mut b = batch.borrow_mut();
            let n = match sock.try_io(Interest::READABLE, || b.recv(fd)) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // ICMP errors from earlier sends surface here; nothing to do.
                Err(_) => continue,
            };
            let now = Now::system();
            for i in 0..n {
                let Some((slot, len, from)) = b.datagram(i) else {
                    continue;
                };
                coalesce::note_datagram();
                let pending = {
                    let mut st = state.borrow_mut();
                    handle(&mut st, slot, len, from, now);
                    st.core.has_commands()
                };
                if pending {
                    process_commands(&state);
                }
            }
            if n < BATCH {
                drained(&sock);
                break;
            }
        }
        tokio::task::yield_now().await;
    }
}

/// A short batch emptied the socket: tell tokio, so that the task sleeps
/// until the next datagram instead of making a `recvmmsg` that returns EAGAIN.
/// A datagram that arrived meanwhile is not missed: its edge is still queued
/// in epoll, and tokio only clears readiness that no newer event has set.
fn drained(sock: &UdpSocket) {
    let _ = sock.try_io(Interest::READABLE, || {
        Err::<(), _>(io::ErrorKind::WouldBlock.into())
    });
}
