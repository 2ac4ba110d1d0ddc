//! `GET /metrics` for every service, in the OpenMetrics text format
//! (which Prometheus scrapes), encoded by the `prometheus-client` crate.
//!
//! The services keep their counters where the work happens (atomics in
//! their own structs, histograms from this crate); at each scrape they read
//! them into a [`Scrape`], which encodes them. A counter's name is given
//! without `_total`: the encoder adds it.

use std::sync::atomic::AtomicU64;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
pub use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The content type of the OpenMetrics text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Label pairs of one series, e.g. `[("envoy", "reorder")]`.
pub type Labels = Vec<(&'static str, String)>;

/// The metrics of one scrape.
#[derive(Default)]
pub struct Scrape {
    registry: Registry,
}

impl Scrape {
    /// An empty scrape.
    pub fn new() -> Scrape {
        Scrape::default()
    }

    /// A counter (`name` without `_total`).
    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        let c: Counter = Counter::default();
        c.inc_by(value);
        self.registry.register(name, help, c);
    }

    /// A counter of seconds, from nanoseconds (`name` without `_total`).
    pub fn seconds(&mut self, name: &str, help: &str, nanos: u64) {
        let c: Counter<f64, AtomicU64> = Counter::default();
        c.inc_by(nanos as f64 / 1e9);
        self.registry.register(name, help, c);
    }

    /// A gauge.
    pub fn gauge(&mut self, name: &str, help: &str, value: u64) {
        let g: Gauge<u64, AtomicU64> = Gauge::default();
        g.set(value);
        self.registry.register(name, help, g);
    }

    /// A counter with one series per label set (`name` without `_total`).
    pub fn counters(&mut self, name: &str, help: &str, series: impl IntoIterator<Item = (Labels, u64)>) {
        let family = Family::<Labels, Counter>::default();
        for (labels, value) in series {
            family.get_or_create(&labels).inc_by(value);
        }
        self.registry.register(name, help, family);
    }

    /// Counters of seconds, from nanoseconds, one series per label set.
    pub fn seconds_by(&mut self, name: &str, help: &str, series: impl IntoIterator<Item = (Labels, u64)>) {
        let family = Family::<Labels, Counter<f64, AtomicU64>>::default();
        for (labels, nanos) in series {
            family.get_or_create(&labels).inc_by(nanos as f64 / 1e9);
        }
        self.registry.register(name, help, family);
    }

    /// A gauge with one series per label set.
    pub fn gauges(&mut self, name: &str, help: &str, series: impl IntoIterator<Item = (Labels, u64)>) {
        let family = Family::<Labels, Gauge<u64, AtomicU64>>::default();
        for (labels, value) in series {
            family.get_or_create(&labels).set(value);
        }
        self.registry.register(name, help, family);
    }

    /// A histogram the service keeps (shared, not copied).
    pub fn histogram(&mut self, name: &str, help: &str, histogram: &Histogram) {
        self.registry.register(name, help, histogram.clone());
    }

    /// The encoded text.
    pub fn text(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

impl IntoResponse for Scrape {
    fn into_response(self) -> Response {
        ([(header::CONTENT_TYPE, CONTENT_TYPE)], self.text()).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_is_openmetrics_with_escaped_labels() {
        let mut s = Scrape::new();
        s.counter("nodb_x_appends", "Actions appended.", 3);
        s.gauge("nodb_x_head_seq", "The head.", 7);
        s.seconds("nodb_x_apply_seconds", "Time.", 1_500_000_000);
        s.gauges("nodb_x_lag", "Lag.", [(vec![("envoy", "a\"b".to_string())], 2)]);
        let h = Histogram::new([1.0, 4.0]);
        h.observe(3.0);
        s.histogram("nodb_x_batch_size", "Batch sizes.", &h);
        let text = s.text();
        for line in [
            "# TYPE nodb_x_appends counter",
            "nodb_x_appends_total 3",
            "nodb_x_head_seq 7",
            "nodb_x_apply_seconds_total 1.5",
            "nodb_x_lag{envoy=\"a\\\"b\"} 2",
            "nodb_x_batch_size_bucket{le=\"4.0\"} 1",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "no line {line:?} in:\n{text}");
        }
    }
}
