//! A TURN worker: one thread with a current-thread tokio runtime that owns a
//! `TurnCore`, its UDP listening sockets, the relay sockets of its
//! allocations and its TCP/TLS clients. The drivers (`udp`, `stream`) read
//! the sockets and hand bytes to the core; this module carries out what the
//! core asks for, runs its timers and takes the daemon's control messages.
//! Nothing on the packet path crosses a thread, takes a lock or allocates.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::turn::sessions::{AllocationInfo, Target};
use crate::turn::usage::UsageHook;
use crate::turn::{ClientAddr, Command, CoreConfig, Now, RelayId, SharedState, TurnCore};

use super::batch::RecvBatch;
use super::coalesce::BatchDelay;
use super::kernel_routes::KernelRoutes;
use super::sockets;
use super::stats_board::{StatsBoard, WorkerReport};
use super::stream::{self, StreamHandle, StreamSettings};
use super::udp;

/// Relay sockets that could not be opened for want of descriptors are
/// reported at most this often (all workers together).
static RELAY_FD_WARNINGS: super::WarnEvery = super::WarnEvery::new(Duration::from_secs(10));

const STATS_INTERVAL: Duration = Duration::from_millis(500);

/// Messages from the daemon to a worker.
#[derive(Debug)]
pub enum Control {
    Reconfigure(Arc<CoreConfig>),
    RevokeUser {
        user: String,
        until_unix: u64,
    },
    Drain,
    Shutdown,
    /// The admin API's list: this worker's allocations (of one user).
    Allocations {
        user: Option<String>,
        reply: oneshot::Sender<Vec<AllocationInfo>>,
    },
    /// The admin API ends allocations; the reply is how many ended here.
    Disconnect {
        target: Target,
        reply: oneshot::Sender<usize>,
    },
}

/// A running worker thread and the channel that controls it.
pub struct Worker {
    pub control: mpsc::UnboundedSender<Control>,
    pub thread: std::thread::JoinHandle<()>,
}

/// Sends go through a std clone of each socket: a plain non-blocking
/// sendto. tokio's `try_send_to` refuses until the reactor has seen the socket
/// writable, which on a busy worker can drop the first packets of a new relay.
pub(super) struct RelaySocket {
    pub(super) sender: std::net::UdpSocket,
    pub(super) task: JoinHandle<()>,
}

pub(super) struct WorkerState {
    pub(super) core: TurnCore,
    /// Std clones of the listening sockets, for sending (see `RelaySocket`).
    pub(super) listeners: Vec<std::net::UdpSocket>,
    pub(super) relays: HashMap<RelayId, RelaySocket>,
    /// TCP/TLS clients: where their frames are queued for writing.
    pub(super) streams: HashMap<ClientAddr, StreamHandle>,
    /// Receive buffers shared by every UDP socket of the worker: one task
    /// runs at a time, and none holds it across an await.
    pub(super) batch: Rc<RefCell<RecvBatch>>,
    /// Gets every usage record after it is logged.
    pub(super) usage_hook: Option<UsageHook>,
    /// The routes this worker put in the XDP fast path.
    pub(super) kernel: Option<KernelRoutes>,
}

pub(super) type State = Rc<RefCell<WorkerState>>;

/// Everything a worker thread starts with.
pub struct WorkerSetup {
    pub index: usize,
    pub workers: usize,
    pub udp: Vec<std::net::UdpSocket>,
    pub tcp: Vec<std::net::TcpListener>,
    pub tls: Vec<std::net::TcpListener>,
    pub cfg: Arc<CoreConfig>,
    pub shared: Arc<SharedState>,
    pub board: StatsBoard,
    pub streams: Arc<StreamSettings>,
    pub batch_delay: BatchDelay,
    /// Gets every usage record after it is logged; `None`: log only.
    pub usage_hook: Option<UsageHook>,
    /// The XDP fast path, when attached.
    pub fast_path: Option<Arc<crate::xdp::FastPath>>,
}

/// Starts a worker thread with its own current-thread runtime.
pub fn spawn_worker(setup: WorkerSetup) -> io::Result<Worker> {
    let index = setup.index;
    let (tx, rx) = mpsc::unbounded_channel();
    let thread = std::thread::Builder::new()
        .name(format!("turn-worker-{index}"))
        .spawn(move || {
            let delay = setup.batch_delay.clone();
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .on_thread_park(move || delay.before_park())
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(worker = index, error = %e, "cannot start worker runtime");
                    return;
                }
            };
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, run(setup, rx));
        })?;
    Ok(Worker {
        control: tx,
        thread,
    })
}

async fn run(setup: WorkerSetup, mut control: mpsc::UnboundedReceiver<Control>) {
    let WorkerSetup {
        index,
        workers,
        udp: listeners,
        tcp,
        tls,
        cfg,
        shared,
        board,
        streams,
        batch_delay: _,
        usage_hook,
        fast_path,
    } = setup;
    let rng: Box<dyn rand::Rng + Send> = Box::new(
        <rand::rngs::StdRng as rand::SeedableRng>::from_rng(&mut rand::rng()),
    );
    let mut core = TurnCore::new(cfg, shared, rng, index, workers);
    if fast_path.is_some() {
        core.enable_fast_path();
    }
    let mut socks = Vec::new();
    let mut senders = Vec::new();
    for l in listeners {
        match l
            .try_clone()
            .and_then(|c| UdpSocket::from_std(l).map(|s| (c, s)))
        {
            Ok((c, s)) => {
                senders.push(c);
                socks.push(Rc::new(s));
            }
            Err(e) => {
                tracing::error!(worker = index, error = %e, "cannot register listener");
                return;
            }
        }
    }
    let kernel = fast_path.map(|p| KernelRoutes::new(p, &senders));
    let state: State = Rc::new(RefCell::new(WorkerState {
        core,
        kernel,
        listeners: senders,
        relays: HashMap::new(),
        streams: HashMap::new(),
        batch: Rc::new(RefCell::new(RecvBatch::new())),
        usage_hook,
    }));
    let mut tasks = Vec::new();
    for (i, sock) in socks.into_iter().enumerate() {
        tasks.push(tokio::task::spawn_local(udp::listen_loop(
            state.clone(),
            sock,
            i as u16,
        )));
    }
    tasks.push(tokio::task::spawn_local(timer_loop(
        state.clone(),
        board.clone(),
        index,
    )));
    for (listeners, secure) in [(tcp, false), (tls, true)] {
        for (i, l) in listeners.into_iter().enumerate() {
            match tokio::net::TcpListener::from_std(l) {
                Ok(l) => tasks.push(tokio::task::spawn_local(stream::accept_loop(
                    state.clone(),
                    l,
                    i as u16,
                    secure,
                    streams.clone(),
                ))),
                Err(e) => {
                    tracing::error!(worker = index, error = %e, "cannot register TCP listener")
                }
            }
        }
    }
    while let Some(msg) = control.recv().await {
        let now = Now::system();
        // Answers wait until the commands are carried out: usage records
        // logged, relays closed.
        let mut answer: Option<(oneshot::Sender<usize>, usize)> = None;
        let stop = matches!(msg, Control::Shutdown);
        {
            let mut st = state.borrow_mut();
            match msg {
                Control::Reconfigure(cfg) => st.core.reconfigure(cfg),
                Control::RevokeUser { user, until_unix } => {
                    st.core.revoke_user(&user, until_unix, now);
                }
                Control::Drain => st.core.set_draining(true),
                // What the drain left behind still gets its usage record.
                Control::Shutdown => st.core.shutdown(now),
                Control::Allocations { user, reply } => {
                    let _ = reply.send(st.core.sessions(user.as_deref(), now));
                }
                Control::Disconnect { target, reply } => {
                    let ended = st.core.disconnect(&target, now);
                    answer = Some((reply, ended));
                }
            }
        }
        process_commands(&state);
        if let Some((reply, ended)) = answer {
            let _ = reply.send(ended);
        }
        if stop {
            break;
        }
        // The drain (and a reload) waits for counts newer than its request.
        report(&state, &board, index);
    }
    for t in tasks {
        t.abort();
    }
    let relays: Vec<RelaySocket> = state.borrow_mut().relays.drain().map(|(_, r)| r).collect();
    for r in relays {
        r.task.abort();
    }
}

async fn timer_loop(state: State, board: StatsBoard, index: usize) {
    // Report at once, so readiness and the watchdog see this worker alive.
    report(&state, &board, index);
    let mut last_stats = tokio::time::Instant::now();
    loop {
        let wake = state.borrow().core.poll_timeout();
        let sleep = wake
            .map(|w| w.saturating_duration_since(std::time::Instant::now()))
            .unwrap_or(STATS_INTERVAL)
            .min(STATS_INTERVAL);
        tokio::time::sleep(sleep).await;
        state.borrow_mut().core.handle_timeout(Now::system());
        process_commands(&state);
        if last_stats.elapsed() >= STATS_INTERVAL {
            last_stats = tokio::time::Instant::now();
            fold_kernel_traffic(&state);
            report(&state, &board, index);
        }
    }
}

/// Counts what the XDP fast path relayed as this worker's own traffic.
fn fold_kernel_traffic(state: &State) {
    let mut st = state.borrow_mut();
    let WorkerState { core, kernel, .. } = &mut *st;
    if let Some(k) = kernel {
        for (id, t) in k.fold() {
            core.note_fast_traffic(id, t);
        }
    }
}

/// Posts this worker's counters on the board, stamped now.
fn report(state: &State, board: &StatsBoard, index: usize) {
    let stats = state.borrow().core.stats();
    if let Ok(mut b) = board.lock() {
        if b.len() <= index {
            b.resize(index + 1, None);
        }
        b[index] = Some(WorkerReport {
            stats,
            at: std::time::Instant::now(),
        });
    }
}

/// Carries out what the core asked for, including relay binds whose outcome
/// feeds straight back into the core.
pub(super) fn process_commands(state: &State) {
    loop {
        let cmd = state.borrow_mut().core.poll_command();
        let Some(cmd) = cmd else { break };
        match cmd {
            Command::ToClient { client, bytes } => {
                let st = state.borrow();
                if client.transport.is_stream() {
                    if let Some(s) = st.streams.get(&client) {
                        s.send(bytes);
                    }
                } else if let Some(l) = st.listeners.get(usize::from(client.listener)) {
                    let _ = l.send_to(&bytes, client.addr);
                }
            }
            Command::BindRelay { relay, addr } => {
                let bound = sockets::relay_udp(addr)
                    .and_then(|s| s.try_clone().map(|c| (c, s)))
                    .and_then(|(c, s)| UdpSocket::from_std(s).map(|s| (c, s)));
                let ok = match bound {
                    Ok((sender, sock)) => {
                        let sock = Rc::new(sock);
                        let task = tokio::task::spawn_local(udp::relay_loop(
                            state.clone(),
                            sock.clone(),
                            relay,
                        ));
                        state
                            .borrow_mut()
                            .relays
                            .insert(relay, RelaySocket { sender, task });
                        true
                    }
                    Err(e) if super::out_of_descriptors(&e) => {
                        // The core retries other ports and then answers 508;
                        // only this line tells the operator why.
                        if let Some(held_back) = RELAY_FD_WARNINGS.admit() {
                            tracing::warn!(
                                %addr,
                                error = %e,
                                held_back,
                                "cannot open a relay socket: out of file descriptors; \
                                 Allocate requests get 508 until some close (raise the \
                                 open-files limit: LimitNOFILE in the service unit, ulimit -n)"
                            );
                        }
                        false
                    }
                    Err(e) => {
                        tracing::debug!(%addr, error = %e, "relay port unavailable, trying another");
                        false
                    }
                };
                state
                    .borrow_mut()
                    .core
                    .relay_bound(relay, ok, Now::system());
            }
            Command::FastRoute(route) => {
                if let Some(k) = state.borrow_mut().kernel.as_mut() {
                    k.install(&route);
                }
            }
            Command::ForgetFastRoutes { allocation } => {
                let mut st = state.borrow_mut();
                let WorkerState { core, kernel, .. } = &mut *st;
                if let Some(k) = kernel {
                    let last = k.forget(allocation);
                    core.note_fast_traffic(allocation, last);
                }
            }
            Command::CloseRelay { relay, .. } => {
                let removed = state.borrow_mut().relays.remove(&relay);
                if let Some(r) = removed {
                    r.task.abort();
                }
            }
            Command::AllocationEnded(mut record) => {
                let last = state
                    .borrow_mut()
                    .kernel
                    .as_mut()
                    .and_then(|k| k.take_unrecorded(record.allocation));
                if let Some(t) = last {
                    record.add_traffic(t);
                }
                record.log();
                let hook = state.borrow().usage_hook.clone();
                if let Some(hook) = hook {
                    hook(&record);
                }
            }
        }
    }
}
