//! TURN over TCP and TLS (RFC 8656 §12.5, RFC 6062's framing): each accepted
//! connection is owned by the worker whose SO_REUSEPORT listener took it, and
//! feeds the same sans-IO core as UDP. The allocation belongs to the
//! connection: when it closes, the allocation goes.

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};

use super::framing::FrameBuffer;
use super::worker::{State, process_commands};
use super::{WarnEvery, out_of_descriptors};
use crate::budget::{ITEM_OVERHEAD, Pool, QueueBytes, QueueKind};
use crate::connections::{ConnectionCounter, Refused};
use crate::turn::{ClientAddr, Now, Transport};
use crate::untrusted::Untrusted;

/// Limits for stream clients, shared by every worker.
pub struct StreamSettings {
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub counter: Arc<ConnectionCounter>,
    pub max_connections: u32,
    pub max_per_ip: u32,
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
    /// Frames queued per connection.
    pub send_queue: usize,
    /// Bytes queued per connection.
    pub send_queue_bytes: u64,
    /// Bytes queued on every stream connection (no limit in total: each
    /// connection's is bounded, and so is their number); for `/metrics`.
    pub queues: Arc<Pool>,
}

/// The bytes a queued frame costs.
fn frame_cost(frame: &[u8]) -> u64 {
    frame.len() as u64 + ITEM_OVERHEAD
}

/// Where the worker queues frames for one connection's writer.
pub struct StreamHandle {
    tx: mpsc::Sender<Vec<u8>>,
    bytes: Rc<QueueBytes>,
    kill: Rc<Notify>,
}

impl StreamHandle {
    /// Queues a frame; a client too slow to take its frames is dropped rather
    /// than buffered for without bound. Its bytes count until the writer has
    /// written the frame.
    pub fn send(&self, frame: Vec<u8>) {
        let cost = frame_cost(&frame);
        if self.bytes.try_add(cost).is_err() {
            self.kill.notify_one();
            return;
        }
        if self.tx.try_send(frame).is_err() {
            self.bytes.remove(cost);
            self.bytes
                .pool()
                .count_refused(QueueKind::Send, crate::budget::Over::Queue);
            self.kill.notify_one();
        }
    }
}

pub(super) async fn accept_loop(
    state: State,
    listener: TcpListener,
    index: u16,
    secure: bool,
    settings: Arc<StreamSettings>,
) {
    let transport = if secure {
        Transport::Tls
    } else {
        Transport::Tcp
    };
    let mut failing = false;
    loop {
        let (tcp, addr) = match listener.accept().await {
            Ok(c) => c,
            Err(e) if is_connection_error(&e) => {
                // That one client gave up before we took it; the next is fine.
                tracing::debug!(error = %e, "TCP accept: connection gone");
                continue;
            }
            Err(e) => {
                // Out of file descriptors and the like: the connection stays
                // in the backlog and every retry fails alike until something
                // closes, so back off, say so once in a while, keep serving.
                failing = true;
                accept_failed(&e);
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        if std::mem::take(&mut failing) {
            tracing::info!(transport = transport.as_str(), "TCP accept works again");
        }
        let slot = match settings.counter.acquire(
            addr.ip(),
            settings.max_connections,
            settings.max_per_ip,
        ) {
            Ok(slot) => slot,
            Err(why) => {
                tracing::debug!(client = %addr, total = matches!(why, Refused::Total), "TURN stream connection refused: limit");
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let client = ClientAddr {
            transport,
            addr,
            listener: index,
        };
        let state = state.clone();
        let settings = settings.clone();
        tokio::task::spawn_local(async move {
            match (secure, settings.tls.clone()) {
                (false, _) => serve(state, tcp, client, &settings).await,
                (true, Some(cfg)) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
                    match tokio::time::timeout(settings.handshake_timeout, acceptor.accept(tcp))
                        .await
                    {
                        Ok(Ok(tls)) => serve(state, tls, client, &settings).await,
                        Ok(Err(e)) => {
                            // The error may quote what the client sent.
                            let e = e.to_string();
                            tracing::debug!(client = %addr, error = %Untrusted(&e), "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(client = %addr, "TLS handshake timed out"),
                    }
                }
                (true, None) => {}
            }
            drop(slot);
        });
    }
}

/// How long an accept loop waits after a failure other than a vanished client.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Failed accepts are logged at most this often (all listeners together).
static ACCEPT_WARNINGS: WarnEvery = WarnEvery::new(Duration::from_secs(10));

/// The client went away between its connect and our accept: nothing is
/// wrong with the listener.
pub fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    )
}

fn accept_failed(e: &io::Error) {
    let Some(held_back) = ACCEPT_WARNINGS.admit() else {
        return;
    };
    if out_of_descriptors(e) {
        tracing::warn!(
            error = %e,
            held_back,
            "TCP accept failed: out of file descriptors; new TURN TCP/TLS clients wait in \
             the listen backlog until some close (raise the open-files limit: LimitNOFILE \
             in the service unit, ulimit -n)"
        );
    } else {
        tracing::warn!(error = %e, held_back, "TCP accept failed");
    }
}

async fn serve<S>(state: State, stream: S, client: ClientAddr, settings: &StreamSettings)
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(settings.send_queue.max(1));
    let kill = Rc::new(Notify::new());
    let bytes = Rc::new(QueueBytes::new(
        settings.queues.clone(),
        settings.send_queue_bytes,
        QueueKind::Send,
    ));
    state.borrow_mut().streams.insert(
        client,
        StreamHandle {
            tx,
            bytes: bytes.clone(),
            kill: kill.clone(),
        },
    );
    let writer = tokio::task::spawn_local(async move {
        while let Some(frame) = rx.recv().await {
            let written = wr.write_all(&frame).await;
            bytes.remove(frame_cost(&frame));
            if written.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
        // Frames still queued when the writer stops are dropped with the
        // channel, and `bytes`, dropped last, gives their bytes back.
    });
    let outcome = read_frames(&state, &mut rd, client, settings, &kill).await;
    if let Err(why) = outcome {
        tracing::debug!(client = %client.addr, transport = client.transport.as_str(), why, "TURN stream closed");
    }
    {
        let mut st = state.borrow_mut();
        st.streams.remove(&client);
        st.core.client_closed(client, Now::system());
    }
    process_commands(&state);
    // The writer ends once its queue is empty and the sender is gone; a peer
    // that does not read gets a moment, not forever.
    let abort = writer.abort_handle();
    if tokio::time::timeout(Duration::from_secs(2), writer)
        .await
        .is_err()
    {
        abort.abort();
    }
}

async fn read_frames<R: AsyncRead + Unpin>(
    state: &State,
    rd: &mut R,
    client: ClientAddr,
    settings: &StreamSettings,
    kill: &Notify,
) -> Result<(), &'static str> {
    let mut frames = FrameBuffer::new();
    let mut chunk = vec![0u8; 16 * 1024];
    // The connection may go without an allocation for idle_timeout at a
    // time: after it connects, and again whenever its allocation is gone
    // (deleted, expired), so a connection cannot outlive its allocation and
    // tie up a connection slot for ever.
    let mut idle = IdleWatch::new(settings.idle_timeout);
    loop {
        let n = tokio::select! {
            r = rd.read(&mut chunk) => match r {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(_) => return Err("read error"),
            },
            _ = kill.notified() => return Err("slow reader"),
            _ = tokio::time::sleep_until(idle.deadline) => {
                let has = state.borrow().core.has_allocation(client);
                if idle.on_deadline(has, tokio::time::Instant::now()) {
                    continue;
                }
                return Err("no allocation for the idle timeout");
            }
        };
        frames.push(&chunk[..n], |frame| handle_frame(state, client, frame))?;
        if idle.allocated {
            let has = state.borrow().core.has_allocation(client);
            idle.on_frames(has, tokio::time::Instant::now());
        }
    }
}

/// When a stream connection without an allocation is closed.
struct IdleWatch {
    timeout: Duration,
    deadline: tokio::time::Instant,
    /// Whether the connection had an allocation when last looked at.
    allocated: bool,
}

impl IdleWatch {
    fn new(timeout: Duration) -> IdleWatch {
        IdleWatch {
            timeout,
            deadline: tokio::time::Instant::now() + timeout,
            allocated: false,
        }
    }

    /// At the deadline: whether the connection stays open, and if so the
    /// next deadline. One with an allocation is looked at again a timeout
    /// later; one whose allocation went since the last look gets a whole
    /// timeout from now to allocate again.
    fn on_deadline(&mut self, has_allocation: bool, now: tokio::time::Instant) -> bool {
        if has_allocation || self.allocated {
            self.allocated = has_allocation;
            self.deadline = now + self.timeout;
            return true;
        }
        false
    }

    /// After frames were handled: a connection that just deleted its
    /// allocation (Refresh with LIFETIME 0) has a timeout from now.
    fn on_frames(&mut self, has_allocation: bool, now: tokio::time::Instant) {
        if self.allocated && !has_allocation {
            self.allocated = false;
            self.deadline = now + self.timeout;
        }
    }
}

fn handle_frame(state: &State, client: ClientAddr, frame: &[u8]) {
    let pending = {
        let mut st = state.borrow_mut();
        let st = &mut *st;
        if let Some(send) = st.core.handle_client(client, frame, Now::system())
            && let Some(relay) = st.relays.get(&send.relay)
        {
            let _ = relay.sender.send_to(send.payload, send.peer);
        }
        st.core.has_commands()
    };
    if pending {
        process_commands(state);
    }
}

/// A TCP listener that shares its port with the other workers' (the kernel
/// spreads connections across them).
pub fn reuseport_tcp(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(super::sockets::TCP_BACKLOG)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_deadline_is_armed_again_once_the_allocation_is_gone() {
        let t = Duration::from_secs(30);
        let mut w = IdleWatch::new(t);
        let start = w.deadline;
        // No allocation by the first deadline: closed.
        assert!(!IdleWatch::new(t).on_deadline(false, start));
        // An allocation: looked at again a timeout later.
        assert!(w.on_deadline(true, start));
        assert_eq!(w.deadline, start + t);
        // Deleted with a Refresh: a timeout from the deletion.
        let deleted = start + Duration::from_secs(5);
        w.on_frames(false, deleted);
        assert_eq!(w.deadline, deleted + t);
        assert!(!w.on_deadline(false, deleted + t));
        // Expired on its own between two looks: one more timeout, then closed.
        let mut w = IdleWatch::new(t);
        assert!(w.on_deadline(true, start));
        assert!(w.on_deadline(false, start + t));
        assert!(!w.on_deadline(false, start + t + t));
    }
}
