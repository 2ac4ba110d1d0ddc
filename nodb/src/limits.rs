//! The options every service takes for the limits it puts on its clients
//! (time, connections, WebSocket messages, dispatch rates) and on its own
//! shutdown; `docs/limits.md` lists them with their defaults.

use std::time::Duration;

use nodb_server::Enforcer;
use nodb_server::limits::{self, DispatchRates, Limits, Rate};

/// Limit options of a service.
#[derive(clap::Args, Debug, Clone)]
pub struct LimitArgs {
    /// Close a connection that has not sent a whole request line and
    /// headers within SECONDS; also how long a kept-alive connection may
    /// wait idle for its next request.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0, global = true)]
    pub header_timeout: f64,
    /// Give up on a request body (408) that sends nothing for SECONDS.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0, global = true)]
    pub body_timeout: f64,
    /// Answer 408 to a request not answered within SECONDS, reading its
    /// body included (a stream or WebSocket counts as answered once it
    /// starts).
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0, global = true)]
    pub request_timeout: f64,
    /// The most connections open at once; more get a 503. By default half
    /// of the open files the process may have, after keeping some for its
    /// own work (the soft limit is raised to the hard one at start).
    #[arg(long, value_name = "N", global = true)]
    pub max_connections: Option<usize>,
    /// The most connections open at once from one IP address (0: no limit
    /// of its own). By default half of --max-connections.
    #[arg(long, value_name = "N", global = true)]
    pub max_connections_per_ip: Option<usize>,
    /// The largest WebSocket message a client may send on a stream; a
    /// larger one closes the stream (code 1009) before it is read.
    #[arg(long, value_name = "BYTES", default_value_t = limits::DEFAULT_MAX_WS_MESSAGE, global = true)]
    pub max_ws_message: usize,
    /// Dispatched actions a second allowed per client id (and per token
    /// subject); 0 turns the limit off. Over it: 429 rate_limited with
    /// Retry-After.
    #[arg(long, value_name = "N", default_value_t = 50_000, global = true)]
    pub client_rate: u32,
    /// The most actions a client may dispatch at once (the size of its
    /// --client-rate bucket).
    #[arg(long, value_name = "N", default_value_t = 100_000, global = true)]
    pub client_burst: u32,
    /// Dispatched actions a second allowed per remote IP address; 0 turns
    /// the limit off.
    #[arg(long, value_name = "N", default_value_t = 200_000, global = true)]
    pub ip_rate: u32,
    /// The most actions one address may dispatch at once (the size of its
    /// --ip-rate bucket).
    #[arg(long, value_name = "N", default_value_t = 400_000, global = true)]
    pub ip_burst: u32,
    /// After SIGINT or SIGTERM, exit within SECONDS whatever is still in
    /// flight (requests get a third of it to finish).
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0, global = true)]
    pub shutdown_timeout: f64,
}

impl Default for LimitArgs {
    fn default() -> Self {
        LimitArgs {
            header_timeout: 10.0,
            body_timeout: 10.0,
            request_timeout: 60.0,
            max_connections: None,
            max_connections_per_ip: None,
            max_ws_message: limits::DEFAULT_MAX_WS_MESSAGE,
            client_rate: 50_000,
            client_burst: 100_000,
            ip_rate: 200_000,
            ip_burst: 400_000,
            shutdown_timeout: 30.0,
        }
    }
}

fn seconds(name: &str, value: f64) -> anyhow::Result<Duration> {
    if value.is_finite() && value > 0.0 {
        Ok(Duration::from_secs_f64(value))
    } else {
        anyhow::bail!("--{name} must be a positive number of seconds, not {value}")
    }
}

fn rate(per_second: u32, burst: u32) -> Option<Rate> {
    (per_second > 0).then_some(Rate { per_second, burst: burst.max(1) })
}

impl LimitArgs {
    /// Raises the open files limit, checks the options and makes the
    /// process's [`Enforcer`].
    ///
    /// # Errors
    /// A time that is not a positive number, or a zero limit.
    pub fn enforcer(&self) -> anyhow::Result<Enforcer> {
        let fds = limits::raise_open_files_limit();
        let cap = self.max_connections.unwrap_or_else(|| limits::default_max_connections(fds));
        let limits = Limits {
            header_timeout: seconds("header-timeout", self.header_timeout)?,
            body_timeout: seconds("body-timeout", self.body_timeout)?,
            request_timeout: seconds("request-timeout", self.request_timeout)?,
            max_connections: Some(cap),
            max_connections_per_ip: self.max_connections_per_ip.unwrap_or(cap / 2),
            max_ws_message: self.max_ws_message,
            rates: DispatchRates {
                per_client: rate(self.client_rate, self.client_burst),
                per_ip: rate(self.ip_rate, self.ip_burst),
            },
            drain_timeout: seconds("shutdown-timeout", self.shutdown_timeout)? / 3,
        };
        tracing::debug!(open_files = fds, ?limits, "limits");
        Enforcer::new(limits).map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// The longest shutdown may take (checked by [`LimitArgs::enforcer`]).
    pub fn shutdown(&self) -> Duration {
        seconds("shutdown-timeout", self.shutdown_timeout).unwrap_or(Duration::from_secs(30))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_off_switches() {
        let e = LimitArgs::default().enforcer().unwrap();
        assert!(e.connection_cap() >= 16);
        assert_eq!(e.limits().max_connections_per_ip, e.connection_cap() / 2);
        let off = LimitArgs { client_rate: 0, ip_rate: 0, ..LimitArgs::default() }.enforcer().unwrap();
        assert_eq!(off.limits().rates, DispatchRates { per_client: None, per_ip: None });
        assert!(LimitArgs { header_timeout: 0.0, ..LimitArgs::default() }.enforcer().is_err());
        assert!(LimitArgs { shutdown_timeout: f64::NAN, ..LimitArgs::default() }.enforcer().is_err());
    }
}
