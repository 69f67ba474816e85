//! I/O drivers: thin loops that move bytes between sockets and the sans-IO
//! TURN core.

pub mod admin;
pub mod batch;
pub mod coalesce;
pub mod framing;
mod kernel_routes;
pub mod sockets;
pub mod stats_board;
pub mod stream;
pub mod udp;
pub mod worker;

use std::io;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Whether `e` means the process (EMFILE) or the system (ENFILE) has no file
/// descriptor left: nothing to do but wait until some close.
pub fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// Raises this process's open-files soft limit to the hard limit: every relay
/// socket, TCP/TLS client and WebSocket holds a descriptor, and the usual
/// soft limit of 1,024 is far below what the default limits can use.
/// Returns the soft limit in force afterwards (0 if it cannot be read).
pub fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write/read the struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                return want.rlim_cur;
            }
        }
    }
    lim.rlim_cur
}

/// Lets a warning through at most once per interval, for every thread that
/// shares it, and counts what it held back. A daemon out of descriptors
/// fails every accept retry and every relay bind the same way: the first
/// line says all there is to say, and the log must not fill the disk next.
pub struct WarnEvery {
    interval_ms: u64,
    next_ms: AtomicU64,
    held: AtomicU64,
}

impl WarnEvery {
    pub const fn new(interval: Duration) -> WarnEvery {
        WarnEvery {
            interval_ms: interval.as_millis() as u64,
            next_ms: AtomicU64::new(0),
            held: AtomicU64::new(0),
        }
    }

    /// `Some(lines held back since the last one)` when a line may go out now.
    pub fn admit(&self) -> Option<u64> {
        static START: OnceLock<Instant> = OnceLock::new();
        let now = START.get_or_init(Instant::now).elapsed().as_millis() as u64;
        self.admit_at(now)
    }

    fn admit_at(&self, now_ms: u64) -> Option<u64> {
        let next = self.next_ms.load(Ordering::Relaxed);
        let won = now_ms >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now_ms + self.interval_ms,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok();
        if won {
            Some(self.held.swap(0, Ordering::Relaxed))
        } else {
            self.held.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warn_every_lets_one_line_through_per_interval_and_counts_the_rest() {
        let w = WarnEvery::new(Duration::from_secs(10));
        assert_eq!(w.admit_at(5), Some(0));
        assert_eq!((0..50).filter_map(|i| w.admit_at(6 + i)).count(), 0);
        assert_eq!(w.admit_at(9_999), None);
        assert_eq!(w.admit_at(10_005), Some(51));
        assert_eq!(w.admit_at(10_006), None);
    }

    #[test]
    fn descriptor_exhaustion_is_recognised() {
        assert!(out_of_descriptors(&io::Error::from_raw_os_error(
            libc::EMFILE
        )));
        assert!(out_of_descriptors(&io::Error::from_raw_os_error(
            libc::ENFILE
        )));
        assert!(!out_of_descriptors(&io::Error::from_raw_os_error(
            libc::EADDRINUSE
        )));
    }
}
