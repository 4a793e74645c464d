//! Freezing a run part-way, so that the interrupt tests do not race it: the run is stopped
//! (SIGSTOP) once it has read a given number of bytes, the test checks that it is caught under
//! way, and only then sends its signal and lets it go on (SIGCONT). Whatever the machine's
//! load, the signal lands before the run could have finished, so each test either sees the
//! interrupt honoured or fails; none passes by finding the run already done.

use std::fs;
use std::process::Child;
use std::time::{Duration, Instant};

/// Bytes a process has read so far, by `read`, `pread` and `copy_file_range` alike (`rchar`
/// of /proc/PID/io, all its threads together).
pub fn bytes_read(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("rchar:")?.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Stops `child` with SIGSTOP once it has read `past` bytes, waits until every one of its
/// threads is stopped, and returns how many bytes it had read by then (which the caller
/// checks against the input's size: less means the run was caught under way).
pub fn stop_after_reading(child: &mut Child, past: u64) -> u64 {
    let pid = child.id();
    let start = Instant::now();
    while bytes_read(pid) < past {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it had read {past} bytes"
        );
        assert!(start.elapsed() < Duration::from_secs(120), "no progress");
        std::thread::sleep(Duration::from_millis(1));
    }
    signal(child, libc::SIGSTOP);
    // The state follows the command name (in parentheses) in /proc/PID/task/TID/stat.
    let stopped = |stat: String| {
        stat.rsplit_once(')')
            .is_none_or(|(_, rest)| rest.trim_start().starts_with('T'))
    };
    while !fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .all(|t| stopped(fs::read_to_string(t.unwrap().path().join("stat")).unwrap_or_default()))
    {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "SIGSTOP not honoured"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    bytes_read(pid)
}

/// Sends `sig` to a stopped `child`, then lets it go on.
pub fn signal_and_continue(child: &Child, sig: i32) {
    signal(child, sig);
    signal(child, libc::SIGCONT);
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: signalling our own child, which has not been waited for (its pid is still ours).
    let r = unsafe { libc::kill(child.id() as i32, sig) };
    assert_eq!(r, 0, "kill({sig})");
}
