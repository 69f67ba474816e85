//! Measurement helpers shared by the load tools: a latency histogram, the
//! server's CPU time and memory read from /proc, and the open-files limit.

use std::time::Duration;

use serde::Serialize;

/// Values below this are counted exactly, one bucket per microsecond.
const EXACT: u64 = 128;
/// Sub-buckets per power of two above [`EXACT`]: under 1.6% relative error.
const SUB: u64 = 64;
/// The largest power of two tracked; anything larger is clamped (about 12 days
/// in microseconds, far beyond any latency worth reporting).
const MAX_EXP: u32 = 40;
const BUCKETS: usize = (EXACT + (MAX_EXP as u64 - 6) * SUB) as usize;

/// A log-linear histogram of microsecond values (round trip times, relay
/// latencies). Fixed size, so recording never allocates.
#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

fn index(v: u64) -> usize {
    if v < EXACT {
        return v as usize;
    }
    let exp = (63 - v.leading_zeros()).min(MAX_EXP);
    let v = v.min((1u64 << (MAX_EXP + 1)) - 1);
    let mantissa = v >> (exp - 6); // 64..128
    (EXACT + u64::from(exp - 7) * SUB + (mantissa - SUB)) as usize
}

/// The middle of bucket `i`, the value reported for anything in it.
fn value_of(i: usize) -> u64 {
    let i = i as u64;
    if i < EXACT {
        return i;
    }
    let exp = (i - EXACT) / SUB + 7;
    let mantissa = (i - EXACT) % SUB + SUB;
    let low = mantissa << (exp - 6);
    let width = 1u64 << (exp - 6);
    low + width / 2
}

impl Histogram {
    pub fn new() -> Histogram {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }

    pub fn record(&mut self, micros: u64) {
        let i = index(micros).min(BUCKETS - 1);
        self.counts[i] += 1;
        self.total += 1;
        self.max = self.max.max(micros);
    }

    pub fn record_duration(&mut self, d: Duration) {
        self.record(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// The value at quantile `q` (0..=1), in microseconds; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return value_of(i).min(self.max);
            }
        }
        self.max
    }

    /// p50, p99 and max, in milliseconds, for a report.
    pub fn summary(&self) -> Latency {
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            samples: self.total,
            p50_ms: ms(self.quantile(0.50)),
            p99_ms: ms(self.quantile(0.99)),
            max_ms: ms(self.max),
        }
    }
}

/// Histogram shards: recorders on different threads rarely share one.
const SHARDS: usize = 16;

/// A histogram many tasks record into, sharded by a key the caller picks
/// (a client's index) so that they seldom wait for each other.
pub struct SharedHistogram(Vec<std::sync::Mutex<Histogram>>);

impl Default for SharedHistogram {
    fn default() -> Self {
        SharedHistogram((0..SHARDS).map(|_| Default::default()).collect())
    }
}

impl SharedHistogram {
    pub fn record(&self, shard: usize, micros: u64) {
        if let Ok(mut h) = self.0[shard % SHARDS].lock() {
            h.record(micros);
        }
    }

    pub fn merged(&self) -> Histogram {
        let mut all = Histogram::new();
        for s in &self.0 {
            if let Ok(h) = s.lock() {
                all.merge(&h);
            }
        }
        all
    }
}

/// Latency percentiles as reported.
#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct Latency {
    pub samples: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl std::fmt::Display for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms ({} samples)",
            self.p50_ms, self.p99_ms, self.max_ms, self.samples
        )
    }
}

/// One look at another process: its CPU time so far and its memory.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcSample {
    /// User plus system CPU seconds since the process started.
    pub cpu_seconds: f64,
    /// Resident set size now (VmRSS), KiB.
    pub rss_kib: u64,
    /// Peak resident set size (VmHWM), KiB.
    pub hwm_kib: u64,
}

/// Clock ticks per second, for the CPU times in /proc/PID/stat.
fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// utime + stime from the text of /proc/PID/stat, in ticks. The command name
/// (field 2) may hold spaces and parentheses, so fields are counted from the
/// last ')'.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// A `Key:   123 kB` line of /proc/PID/status, in KiB.
pub fn parse_status_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let v = l.strip_prefix(key)?.strip_prefix(':')?;
        v.split_whitespace().next()?.parse().ok()
    })
}

impl ProcSample {
    /// Reads /proc/PID/stat and /proc/PID/status; an error when the process is
    /// gone or /proc cannot be read.
    pub fn read(pid: u32) -> std::io::Result<ProcSample> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let bad = || std::io::Error::other(format!("cannot parse /proc/{pid}"));
        let ticks = parse_stat_ticks(&stat).ok_or_else(bad)?;
        Ok(ProcSample {
            cpu_seconds: ticks as f64 / clock_ticks(),
            rss_kib: parse_status_kib(&status, "VmRSS").ok_or_else(bad)?,
            hwm_kib: parse_status_kib(&status, "VmHWM").unwrap_or(0),
        })
    }
}

/// The CPU seconds (utime + stime) of some threads, summed: kernel threads
/// such as a NAPI poller included. A thread that cannot be read counts 0,
/// with a warning.
pub fn threads_cpu_seconds(tids: &[u32]) -> f64 {
    let mut ticks = 0;
    for tid in tids {
        match std::fs::read_to_string(format!("/proc/{tid}/stat"))
            .ok()
            .and_then(|s| parse_stat_ticks(&s))
        {
            Some(t) => ticks += t,
            None => eprintln!("natbridge bench: cannot read /proc/{tid}/stat"),
        }
    }
    ticks as f64 / clock_ticks()
}

/// The whole machine's CPU time from /proc/stat, and this process's own, to
/// tell how much of the machine something else used during a run (a busy
/// machine makes a benchmark meaningless, and the report should say so).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MachineSample {
    /// user + nice + system + irq + softirq, all CPUs, seconds.
    pub busy_seconds: f64,
    /// Time the hypervisor gave to someone else, seconds.
    pub steal_seconds: f64,
    /// This process's CPU time, seconds.
    pub own_seconds: f64,
}

/// Parses the first (`cpu `) line of /proc/stat: (busy, steal) in ticks.
pub fn parse_proc_stat(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal ...
    let busy = v.first()? + v.get(1)? + v.get(2)? + v.get(5)? + v.get(6)?;
    Some((busy, *v.get(7).unwrap_or(&0)))
}

impl MachineSample {
    pub fn read() -> Option<MachineSample> {
        let (busy, steal) = parse_proc_stat(&std::fs::read_to_string("/proc/stat").ok()?)?;
        let hz = clock_ticks();
        Some(MachineSample {
            busy_seconds: busy as f64 / hz,
            steal_seconds: steal as f64 / hz,
            own_seconds: ProcSample::read(std::process::id()).ok()?.cpu_seconds,
        })
    }

    /// CPU seconds used between `self` and `later` by everything but this
    /// process and the server (`server_cpu`, seconds in the same window),
    /// and the steal time.
    pub fn others_since(&self, later: &MachineSample, server_cpu: f64) -> Interference {
        Interference {
            other_cpu_seconds: (later.busy_seconds
                - self.busy_seconds
                - (later.own_seconds - self.own_seconds)
                - server_cpu)
                .max(0.0),
            steal_seconds: later.steal_seconds - self.steal_seconds,
            load_generator_cpu_seconds: later.own_seconds - self.own_seconds,
        }
    }
}

/// What else ran on the machine while measuring.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Interference {
    /// CPU time of other processes and kernel threads (ksoftirqd included).
    pub other_cpu_seconds: f64,
    pub steal_seconds: f64,
    /// This tool's own CPU time (load generator and echo peer).
    pub load_generator_cpu_seconds: f64,
}

/// Samples `pid` when one is given; `None` (with a warning) when it cannot.
pub fn sample(pid: Option<u32>) -> Option<ProcSample> {
    let pid = pid?;
    match ProcSample::read(pid) {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("natbridge bench: cannot read /proc/{pid}: {e}");
            None
        }
    }
}

/// Every client holds a socket: the load tools raise their open-files limit
/// the way the daemon does.
pub use crate::net::raise_nofile_limit;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_are_close() {
        let mut h = Histogram::new();
        for v in 1..=10_000u64 {
            h.record(v);
        }
        assert_eq!(h.count(), 10_000);
        let p50 = h.quantile(0.5) as f64;
        let p99 = h.quantile(0.99) as f64;
        assert!((p50 - 5000.0).abs() / 5000.0 < 0.02, "p50 {p50}");
        assert!((p99 - 9900.0).abs() / 9900.0 < 0.02, "p99 {p99}");
        assert_eq!(h.quantile(1.0), 10_000);
        let mut small = Histogram::new();
        small.record(3);
        small.record(5);
        assert_eq!(small.quantile(0.5), 3);
        assert_eq!(small.quantile(0.99), 5);
        small.merge(&h);
        assert_eq!(small.count(), 10_002);
        assert_eq!(Histogram::new().quantile(0.5), 0);
        // Huge values clamp instead of panicking.
        let mut big = Histogram::new();
        big.record(u64::MAX);
        assert!(big.quantile(0.5) > 1 << 40);
    }

    #[test]
    fn bucket_bounds_are_monotonic() {
        let mut last = 0;
        for i in 0..BUCKETS {
            let v = value_of(i);
            assert!(v >= last, "bucket {i}");
            last = v;
        }
        for v in [0, 1, 127, 128, 129, 1000, 65_535, 1 << 30] {
            let mid = value_of(index(v)) as f64;
            assert!((mid - v as f64).abs() <= (v as f64 / 60.0).max(0.5), "{v}");
        }
    }

    #[test]
    fn parses_proc_files() {
        let stat = "1234 (natbridge (x)) S 1 1234 1234 0 -1 4194560 100 0 0 0 \
                    250 50 0 0 20 0 3 0 100 1000000 500";
        assert_eq!(parse_stat_ticks(stat), Some(300));
        let status = "Name:\tnatbridge\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(10240));
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(20480));
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
        let me = ProcSample::read(std::process::id()).unwrap();
        assert!(me.rss_kib > 0);
        let stat = "cpu  100 5 20 1000 3 0 7 9 0 0\ncpu0 50 2 10 500 1 0 3 4 0 0\n";
        assert_eq!(parse_proc_stat(stat), Some((132, 9)));
        let a = MachineSample::read().unwrap();
        let b = MachineSample::read().unwrap();
        assert!(a.others_since(&b, 0.0).other_cpu_seconds >= 0.0);
    }
}
