//! Counters and histograms, rendered as Prometheus text on `GET /metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A fixed-bucket histogram.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_micro: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micro: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, v: f64) {
        let i = self.bounds.iter().position(|b| v <= *b).unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Relaxed);
        self.count.fetch_add(1, Relaxed);
        self.sum_micro.fetch_add((v * 1e6) as u64, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, b) in self.bounds.iter().enumerate() {
            cumulative += self.counts[i].load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        cumulative += self.counts[self.bounds.len()].load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_micro.load(Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {}", self.count.load(Relaxed));
    }
}

/// The chronicler's metrics.
#[derive(Debug)]
pub struct Metrics {
    /// Actions appended.
    pub appends: AtomicU64,
    /// Re-sends acknowledged as duplicates.
    pub duplicates: AtomicU64,
    /// Requests refused as out of order.
    pub out_of_order: AtomicU64,
    /// Batches that failed to write (I/O errors, disk full).
    pub write_errors: AtomicU64,
    /// The last durable seq.
    pub head_seq: AtomicU64,
    /// Consumers following the stream.
    pub consumers: AtomicU64,
    /// Actions per durable write.
    pub batch_size: Histogram,
    /// Seconds per `fdatasync`.
    pub fsync_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            appends: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            out_of_order: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
            head_seq: AtomicU64::new(0),
            consumers: AtomicU64::new(0),
            batch_size: Histogram::new(&[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0]),
            fsync_seconds: Histogram::new(&[
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ]),
        }
    }
}

impl Metrics {
    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, v: &AtomicU64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", v.load(Relaxed));
        };
        let gauge = |out: &mut String, name: &str, help: &str, v: &AtomicU64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}", v.load(Relaxed));
        };
        counter(&mut out, "nodb_chronicler_appends_total", "Actions appended to the log.", &self.appends);
        counter(
            &mut out,
            "nodb_chronicler_duplicates_total",
            "Re-sent actions acknowledged as duplicates.",
            &self.duplicates,
        );
        counter(
            &mut out,
            "nodb_chronicler_out_of_order_total",
            "Requests refused because an action number skipped ahead.",
            &self.out_of_order,
        );
        counter(
            &mut out,
            "nodb_chronicler_write_errors_total",
            "Batches that could not be written (disk full, I/O error).",
            &self.write_errors,
        );
        gauge(&mut out, "nodb_chronicler_head_seq", "The seq of the last durable action.", &self.head_seq);
        gauge(&mut out, "nodb_chronicler_consumers", "Consumers following the action stream.", &self.consumers);
        self.batch_size.render(&mut out, "nodb_chronicler_batch_size", "Actions made durable by one fdatasync.");
        self.fsync_seconds.render(&mut out, "nodb_chronicler_fsync_seconds", "Time taken by each fdatasync.");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.appends.fetch_add(3, Relaxed);
        m.batch_size.observe(3.0);
        m.fsync_seconds.observe(0.002);
        let text = m.render();
        assert!(text.contains("nodb_chronicler_appends_total 3\n"), "{text}");
        assert!(text.contains("nodb_chronicler_batch_size_bucket{le=\"4\"} 1\n"), "{text}");
        assert!(text.contains("nodb_chronicler_batch_size_bucket{le=\"2\"} 0\n"), "{text}");
        assert!(text.contains("nodb_chronicler_fsync_seconds_count 1\n"), "{text}");
    }
}
