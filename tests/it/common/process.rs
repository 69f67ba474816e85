//! Child processes other than the daemon: bounded runs of a command, the
//! `natbridge` CLI, coturn's tools, and signals to a child the test owns.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use super::{TempDir, daemon_bin};

/// How often a child is checked for having exited.
const EXIT_POLL: Duration = Duration::from_millis(20);

/// Sends `sig` to `pid`, a child this test spawned and still owns.
pub fn send_signal(pid: u32, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
    // SAFETY: kill(2) with the pid of a child this test spawned and has not
    // reaped yet (so the pid cannot have been reused), and a valid signal.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {sig}): {}",
        std::io::Error::last_os_error()
    );
}

/// Waits up to `within` for `child` to exit; None if it is still running.
pub fn wait_child(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait on a child") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(EXIT_POLL);
    }
}

/// Output bytes as text (lossy UTF-8), for assertions and messages.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `cmd` to completion with its output captured; kills it and fails
/// the test if it runs longer than `timeout`, and fails saying `missing`
/// if the program is not installed.
pub fn run_bounded(cmd: &mut Command, timeout: Duration, missing: &str) -> Output {
    let what = format!("{cmd:?}");
    let mut child = match cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{missing} ({what}: {e})"),
        Err(e) => panic!("spawn {what}: {e}"),
    };
    // Drain the pipes on threads so a chatty child cannot block on a full pipe.
    let mut out_pipe = child.stdout.take().expect("stdout piped");
    let mut err_pipe = child.stderr.take().expect("stderr piped");
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut out_pipe, &mut v);
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut err_pipe, &mut v);
        v
    });
    let Some(status) = wait_child(&mut child, timeout) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "{what} did not finish within {timeout:?}\nstdout:\n{}\nstderr:\n{}",
            text(&out_t.join().unwrap_or_default()),
            text(&err_t.join().unwrap_or_default())
        );
    };
    Output {
        status,
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    }
}

/// Runs `natbridge ARGS...`, killing it after `timeout`.
pub fn run_cli(args: &[&str], timeout: Duration) -> Output {
    run_bounded(
        Command::new(daemon_bin()).args(args),
        timeout,
        "the natbridge binary under test is missing",
    )
}

/// A tool process (coturn's turnutils_*) with its output in a file; killed on
/// drop, its output printed when the test fails.
pub struct Tool {
    pub child: Child,
    out: PathBuf,
    pub cmdline: String,
    _dir: TempDir,
}

impl Tool {
    pub fn spawn(bin: &str, args: &[String]) -> Tool {
        let dir = TempDir::new("coturn");
        let out = dir.path.join("output.txt");
        let f = File::create(&out).expect("create tool output file");
        let child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(f.try_clone().expect("clone output handle"))
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {bin} (is the coturn package installed?): {e}"));
        Tool {
            child,
            out,
            cmdline: format!("{bin} {}", args.join(" ")),
            _dir: dir,
        }
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Waits up to `timeout`; None if it had to be killed.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let status = wait_child(&mut self.child, timeout);
        if status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        status
    }
}

impl Drop for Tool {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- output of `{}` ----\n{}\n---- end ----",
                self.cmdline,
                self.output()
            );
        }
    }
}
