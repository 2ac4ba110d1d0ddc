//! Dispatch rate limits, with the `governor` crate: a token bucket (GCRA)
//! per client id, per token subject and per remote address. A dispatch
//! over a limit is refused with `429 rate_limited` and `Retry-After` (on a
//! socket, an `error` message with the action's id); other clients keep
//! being served.
//!
//! Handlers take a [`DispatchGate`] and call [`DispatchGate::check`] with
//! the clients of the actions they are about to hand to the log. The
//! buckets of keys that have gone quiet are dropped now and then, so a
//! stream of fresh client ids cannot grow memory without bound.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use nodb_auth::Grant;
use nodb_shared::protocol::ErrorCode;

use crate::error::ApiError;
use crate::limits::{DispatchRates, Rate};
use crate::serve::Enforcer;

/// Checks between two sweeps of quiet keys.
const SWEEP_EVERY: u64 = 4096;

/// The rate limiters of a process, shared by its services.
#[derive(Debug)]
pub struct DispatchLimiter {
    rates: DispatchRates,
    clients: Option<DefaultKeyedRateLimiter<String>>,
    subjects: Option<DefaultKeyedRateLimiter<String>>,
    ips: Option<DefaultKeyedRateLimiter<IpAddr>>,
    checks: AtomicU64,
    /// Dispatches refused, per [`Refused`] reason.
    refused: [AtomicU64; Refused::ALL.len()],
}

/// Why a dispatch was refused, for the `reason` label of
/// `nodb_refused_dispatches_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Over the rate of its remote address (`--ip-rate`).
    IpRate,
    /// Over the rate of its token subject (`--client-rate`).
    SubjectRate,
    /// Over the rate of its client id (`--client-rate`).
    ClientRate,
    /// A batch larger than a whole burst (`--client-burst`, `--ip-burst`):
    /// `413`, since waiting would never help.
    OverBurst,
}

impl Refused {
    /// Every reason, in the order of the counters.
    pub const ALL: [Refused; 4] = [Refused::IpRate, Refused::SubjectRate, Refused::ClientRate, Refused::OverBurst];

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            Refused::IpRate => "ip_rate",
            Refused::SubjectRate => "subject_rate",
            Refused::ClientRate => "client_rate",
            Refused::OverBurst => "over_burst",
        }
    }
}

fn quota(rate: Rate) -> Quota {
    let per_second = NonZeroU32::new(rate.per_second).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(rate.burst).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(per_second).allow_burst(burst)
}

impl DispatchLimiter {
    /// Limiters for `rates`.
    pub fn new(rates: DispatchRates) -> DispatchLimiter {
        DispatchLimiter {
            rates,
            clients: rates.per_client.map(|r| RateLimiter::keyed(quota(r))),
            subjects: rates.per_client.map(|r| RateLimiter::keyed(quota(r))),
            ips: rates.per_ip.map(|r| RateLimiter::keyed(quota(r))),
            checks: AtomicU64::new(0),
            refused: Default::default(),
        }
    }

    /// How many dispatches were refused so far, for every reason.
    pub fn refused(&self) -> u64 {
        self.refused.iter().map(|n| n.load(Relaxed)).sum()
    }

    /// How many dispatches were refused so far for `reason`.
    pub fn refused_for(&self, reason: Refused) -> u64 {
        self.refused[reason as usize].load(Relaxed)
    }

    /// Takes `n` actions from the buckets of `ip`, of the token subject of
    /// `grant` and of `client`.
    ///
    /// # Errors
    /// `rate_limited` (429) with the seconds to wait, naming the limit.
    pub fn check(&self, ip: Option<IpAddr>, grant: &Grant, client: &str, n: u32) -> Result<(), ApiError> {
        if self.checks.fetch_add(1, Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep();
        }
        let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        self.check_ip(ip, n.get())?;
        if let (Some(limiter), Some(claims), Some(rate)) = (&self.subjects, grant.claims(), self.rates.per_client) {
            take(limiter, &claims.sub, n).map_err(|over| {
                self.refuse(over, Refused::SubjectRate, n, format!("token subject {:?}", claims.sub), rate)
            })?;
        }
        if let (Some(limiter), Some(rate)) = (&self.clients, self.rates.per_client) {
            take(limiter, &client.to_string(), n)
                .map_err(|over| self.refuse(over, Refused::ClientRate, n, format!("client {client:?}"), rate))?;
        }
        Ok(())
    }

    /// Takes `n` actions from the bucket of `ip` alone: what a service
    /// that relays dispatches to the chronicler checks (a data view), since
    /// the chronicler sees the relay's address, not the client's, and
    /// checks the client id and token subject itself.
    ///
    /// # Errors
    /// As for [`DispatchLimiter::check`].
    pub fn check_ip(&self, ip: Option<IpAddr>, n: u32) -> Result<(), ApiError> {
        let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        if let (Some(limiter), Some(ip), Some(rate)) = (&self.ips, ip, self.rates.per_ip) {
            take(limiter, &ip, n)
                .map_err(|over| self.refuse(over, Refused::IpRate, n, format!("address {ip}"), rate))?;
        }
        Ok(())
    }

    fn refuse(&self, over: Over, reason: Refused, n: NonZeroU32, who: String, rate: Rate) -> ApiError {
        let reason = if matches!(over, Over::Burst) { Refused::OverBurst } else { reason };
        let refused = self.refused[reason as usize].fetch_add(1, Relaxed) + 1;
        tracing::debug!(%who, reason = reason.label(), refused, "dispatch over the rate limit");
        let wait = match over {
            Over::Wait(wait) => wait,
            // Waiting would never help: a batch larger than the burst.
            Over::Burst => {
                return ApiError::new(
                    ErrorCode::PayloadTooLarge,
                    format!(
                        "{} actions at once from {who} is more than the burst of {} the rate limit allows; send smaller batches",
                        n.get(),
                        rate.burst
                    ),
                );
            }
        };
        let seconds = u32::try_from(wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).unwrap_or(u32::MAX).max(1);
        ApiError::new(
            ErrorCode::RateLimited,
            format!(
                "too many dispatches from {who}: the limit is {} actions a second (bursts of {}); retry after {seconds} s",
                rate.per_second, rate.burst
            ),
        )
        .retry_after(seconds)
    }

    /// Drops the buckets of keys that are back to full.
    fn sweep(&self) {
        if let Some(l) = &self.clients {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.subjects {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.ips {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

/// Why a bucket did not have enough.
enum Over {
    /// Not now: after this long.
    Wait(std::time::Duration),
    /// Never: more than the bucket holds.
    Burst,
}

/// Takes `n` from `key`'s bucket.
fn take<K: std::hash::Hash + Eq + Clone>(
    limiter: &DefaultKeyedRateLimiter<K>,
    key: &K,
    n: NonZeroU32,
) -> Result<(), Over> {
    match limiter.check_key_n(key, n) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(not_until)) => Err(Over::Wait(not_until.wait_time_from(DefaultClock::default().now()))),
        Err(_) => Err(Over::Burst),
    }
}

/// The dispatch limits for one request: the process's limiter and the
/// caller's address. Without [`serve_with`](crate::serve::serve_with) (a
/// router driven by tests) nothing is limited.
#[derive(Clone, Debug, Default)]
pub struct DispatchGate {
    limiter: Option<Arc<DispatchLimiter>>,
    ip: Option<IpAddr>,
}

impl DispatchGate {
    /// Takes `n` actions of `client` (the client of their ids) on behalf of
    /// `grant`.
    ///
    /// # Errors
    /// `rate_limited` (429) with `Retry-After`.
    pub fn check(&self, grant: &Grant, client: &str, n: u32) -> Result<(), ApiError> {
        match &self.limiter {
            Some(l) => l.check(self.ip, grant, client, n),
            None => Ok(()),
        }
    }

    /// Takes `n` actions from the caller's address alone (see
    /// [`DispatchLimiter::check_ip`]): for dispatches this service relays.
    ///
    /// # Errors
    /// `rate_limited` (429) with `Retry-After`.
    pub fn check_address(&self, n: u32) -> Result<(), ApiError> {
        match &self.limiter {
            Some(l) => l.check_ip(self.ip, n),
            None => Ok(()),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for DispatchGate {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let limiter = parts.extensions.get::<Enforcer>().map(Enforcer::dispatch_limiter);
        let ip = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        Ok(DispatchGate { limiter, ip })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_from_one_client_is_refused_while_another_is_served() {
        let rates = DispatchRates { per_client: Some(Rate { per_second: 10, burst: 5 }), per_ip: None };
        let l = DispatchLimiter::new(rates);
        for _ in 0..5 {
            l.check(None, &Grant::Open, "flood", 1).unwrap();
        }
        let e = l.check(None, &Grant::Open, "flood", 1).unwrap_err();
        assert_eq!(e.code, ErrorCode::RateLimited);
        assert_eq!(e.retry_after, Some(1));
        l.check(None, &Grant::Open, "calm", 1).unwrap();
        assert_eq!(l.refused(), 1);
        let e = l.check(None, &Grant::Open, "big", 6).unwrap_err();
        assert_eq!((e.code, e.retry_after), (ErrorCode::PayloadTooLarge, None), "more than a burst at once: never");
        assert_eq!((l.refused_for(Refused::ClientRate), l.refused_for(Refused::OverBurst)), (1, 1));
    }

    #[test]
    fn one_address_is_limited_whatever_the_client() {
        let rates = DispatchRates { per_client: None, per_ip: Some(Rate { per_second: 1, burst: 3 }) };
        let l = DispatchLimiter::new(rates);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for k in 0..3 {
            l.check(Some(ip), &Grant::Open, &format!("c{k}"), 1).unwrap();
        }
        assert!(l.check(Some(ip), &Grant::Open, "c9", 1).is_err());
        l.check(Some("10.0.0.2".parse().unwrap()), &Grant::Open, "c9", 1).unwrap();
        assert!(l.check_ip(Some(ip), 1).is_err(), "the address alone");
        assert_eq!(l.refused_for(Refused::IpRate), 2);
    }

    #[test]
    fn no_limiter_no_limit() {
        let gate = DispatchGate::default();
        for _ in 0..1000 {
            gate.check(&Grant::Open, "c", 100).unwrap();
        }
    }
}
