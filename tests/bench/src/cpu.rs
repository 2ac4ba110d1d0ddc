//! CPU time of a service process, read from `/proc/PID/stat` (Linux).
//!
//! On a shared machine the throughput of a run drifts with whatever else
//! runs (and, for durable acks, with the disk), but the CPU a server spends
//! per unit of work drifts much less: it is the figure that shows a small
//! per-request cost such as a token check.

use std::time::{Duration, Instant};

/// User + system CPU time `pid` has used so far; `None` where there is no
/// `/proc` (or the process is gone).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields after its `)`
    // start at field 3, so utime (14) and stime (15) are the 12th and 13th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_secs_f64((utime + stime) as f64 / ticks_per_second()))
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`, 100 on every
/// common Linux).
fn ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// The CPU time `pid` uses between the instants `from` and `stop` (a
/// benchmark's measured window), measured by a task of its own.
pub fn during(pid: u32, from: Instant, stop: Instant) -> tokio::task::JoinHandle<Option<Duration>> {
    tokio::spawn(async move {
        tokio::time::sleep_until(from.into()).await;
        let before = cpu_time(pid)?;
        tokio::time::sleep_until(stop.into()).await;
        Some(cpu_time(pid)?.saturating_sub(before))
    })
}
