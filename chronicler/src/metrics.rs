//! The chronicler's counters and histograms, read into a
//! [`nodb_server::Scrape`] on `GET /metrics`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use nodb_server::metrics::{Histogram, Scrape};

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
    /// Stream consumers cut off because they stopped reading.
    pub stalled_consumers: AtomicU64,
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
            stalled_consumers: AtomicU64::new(0),
            batch_size: Histogram::new([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0]),
            fsync_seconds: Histogram::new([
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ]),
        }
    }
}

impl Metrics {
    /// The metrics, read for one scrape.
    pub fn scrape(&self) -> Scrape {
        let mut s = Scrape::new();
        s.counter("nodb_chronicler_appends", "Actions appended to the log.", self.appends.load(Relaxed));
        s.counter(
            "nodb_chronicler_duplicates",
            "Re-sent actions acknowledged as duplicates.",
            self.duplicates.load(Relaxed),
        );
        s.counter(
            "nodb_chronicler_out_of_order",
            "Requests refused because an action number skipped ahead.",
            self.out_of_order.load(Relaxed),
        );
        s.counter(
            "nodb_chronicler_write_errors",
            "Batches that could not be written (disk full, I/O error).",
            self.write_errors.load(Relaxed),
        );
        s.gauge("nodb_chronicler_head_seq", "The seq of the last durable action.", self.head_seq.load(Relaxed));
        s.gauge("nodb_chronicler_consumers", "Consumers following the action stream.", self.consumers.load(Relaxed));
        s.counter(
            "nodb_chronicler_stalled_consumers",
            "Stream consumers cut off because they took nothing for the stall time.",
            self.stalled_consumers.load(Relaxed),
        );
        s.histogram("nodb_chronicler_batch_size", "Actions made durable by one fdatasync.", &self.batch_size);
        s.histogram("nodb_chronicler_fsync_seconds", "Time taken by each fdatasync.", &self.fsync_seconds);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrapes_every_metric() {
        let m = Metrics::default();
        m.appends.fetch_add(3, Relaxed);
        m.stalled_consumers.fetch_add(2, Relaxed);
        m.batch_size.observe(3.0);
        m.fsync_seconds.observe(0.002);
        let text = m.scrape().text();
        assert!(text.contains("nodb_chronicler_appends_total 3\n"), "{text}");
        assert!(text.contains("nodb_chronicler_stalled_consumers_total 2\n"), "{text}");
        assert!(text.contains("nodb_chronicler_batch_size_bucket{le=\"4.0\"} 1\n"), "{text}");
        assert!(text.contains("nodb_chronicler_batch_size_bucket{le=\"2.0\"} 0\n"), "{text}");
        assert!(text.contains("nodb_chronicler_fsync_seconds_count 1\n"), "{text}");
    }
}
