//! Latency samples and throughput for one benchmark run.

use std::time::Duration;

/// What one run measured.
#[derive(Debug, Default)]
pub struct RunStats {
    /// Acknowledgements received inside the measured window.
    pub acks: u64,
    /// The measured window.
    pub elapsed: Duration,
    /// Ack latencies in nanoseconds (inside the window).
    pub latencies: Vec<u64>,
    /// CPU time the server process used inside the window, where known.
    pub server_cpu: Option<Duration>,
}

impl RunStats {
    /// Acknowledged actions per second.
    pub fn rate(&self) -> f64 {
        self.acks as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `q` quantile (0..=1) of the latencies.
    pub fn quantile(&mut self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        self.latencies.sort_unstable();
        let i = ((self.latencies.len() - 1) as f64 * q).round() as usize;
        Duration::from_nanos(self.latencies[i])
    }

    /// Server CPU time per ack, where known.
    pub fn cpu_per_ack(&self) -> Option<Duration> {
        Some(self.server_cpu? / u32::try_from(self.acks.max(1)).unwrap_or(u32::MAX))
    }

    /// Merges another client's samples.
    pub fn merge(&mut self, other: RunStats) {
        self.acks += other.acks;
        self.latencies.extend(other.latencies);
    }
}

/// A short human form of a duration.
pub fn fmt_duration(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 { format!("{us:.0} µs") } else { format!("{:.2} ms", us / 1000.0) }
}
