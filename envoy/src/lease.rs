//! One active instance per envoy name: a lease in a NATS JetStream
//! key-value bucket (`nodb envoy --lease nats://…`).
//!
//! # The protocol
//!
//! The bucket `nodb_envoy_leases` (created if missing, history 1, `max_age`
//! = the TTL) has one key per envoy name; its value is the holder's id
//! (host, pid and start time of the process). A process that wants to run
//! an envoy:
//!
//! 1. **acquires** the key with `create`, which the server refuses while
//!    another holder's value is there. A standby retries every TTL/3,
//!    logging who holds it;
//! 2. **renews** it every TTL/3 with `update(key, id, revision)`, a
//!    compare-and-set on the revision it last wrote. Each write restarts the
//!    key's age, so the key outlives its holder by at most the TTL;
//! 3. **stops acting at once** (cancels the envoy's run, then goes back to
//!    step 1) when a renewal is refused (another holder wrote the key, or it
//!    expired) or has not succeeded for 3/4 of the TTL (NATS unreachable): it
//!    gives up before the key can expire, so before a standby can take it;
//! 4. **releases** it on a clean shutdown, deleting the key at the revision
//!    it holds, so a standby takes over at its next attempt instead of after
//!    the TTL.
//!
//! A holder that dies simply stops renewing: the server drops its key
//! `max_age` after the last renewal and the next `create` of a standby wins.
//!
//! # Guarantees and their limit
//!
//! At most one live holder per name as long as holders are not paused: a
//! holder gives up at 3/4 of the TTL after its last successful renewal
//! started, and the server keeps the key for the whole TTL after that
//! renewal was written. A holder paused longer than the TTL (a stopped
//! process, a frozen VM) may wake up still acting for a moment while a new
//! holder has begun, and effects already under way when the lease is lost
//! get the runtime's grace period to finish. Such an overlap never breaks
//! exactly-once *results*: effects carry idempotency keys
//! (`<envoy>:<cause seq>`), both holders number their results from the
//! same log, and the chronicler refuses a second, different action under an
//! id it has recorded (see [`crate::runtime`]). The lease only makes
//! repeated effects rare; the log is what makes results exactly-once.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The key-value bucket of the leases.
pub const BUCKET: &str = "nodb_envoy_leases";

/// How long [`Leases`] waits for NATS to connect or answer one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How many copies of the lease bucket the cluster keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Replicas {
    /// 3 if the server reports a cluster of 3 or more servers, else 1.
    #[default]
    Auto,
    /// Exactly this many (1 to 5).
    Exactly(usize),
}

/// Where the leases are and how long one lasts.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// NATS servers, `nats://HOST:PORT` (or `HOST:PORT`).
    pub servers: Vec<String>,
    /// How long a key outlives its last renewal; renewals come every third
    /// of it.
    pub ttl: Duration,
    /// Copies of the bucket, when this process creates it.
    pub replicas: Replicas,
    /// This process's id as a holder, unique among the processes sharing
    /// the bucket.
    pub holder: String,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig { servers: Vec::new(), ttl: Duration::from_secs(10), replicas: Replicas::Auto, holder: holder_id() }
    }
}

impl LeaseConfig {
    /// Checks the settings before anything connects.
    ///
    /// # Errors
    /// [`LeaseError::Config`] with a sentence naming what is wrong.
    pub fn validate(&self) -> Result<(), LeaseError> {
        if self.servers.is_empty() {
            return Err(LeaseError::Config(
                "--lease needs at least one NATS server, such as nats://127.0.0.1:4222".into(),
            ));
        }
        for s in &self.servers {
            s.parse::<async_nats::ServerAddr>()
                .map_err(|e| LeaseError::Config(format!("--lease: {s:?} is not a NATS server address: {e}")))?;
        }
        if self.ttl < Duration::from_secs(1) {
            return Err(LeaseError::Config("--lease-ttl must be at least 1 second".into()));
        }
        if let Replicas::Exactly(n) = self.replicas
            && !(1..=5).contains(&n)
        {
            return Err(LeaseError::Config("--lease-replicas must be between 1 and 5".into()));
        }
        if self.holder.is_empty() {
            return Err(LeaseError::Config("the lease holder id is empty".into()));
        }
        Ok(())
    }
}

/// Why a lease could not be taken, kept or given back.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// A setting that can never work.
    #[error("{0}")]
    Config(String),
    /// NATS could not be reached.
    #[error("cannot connect to NATS at {servers}: {source}")]
    Connect {
        /// The servers tried.
        servers: String,
        /// Why.
        source: async_nats::ConnectError,
    },
    /// The bucket could neither be created nor opened.
    #[error("cannot open the lease bucket {BUCKET}: {0}")]
    Bucket(#[source] async_nats::Error),
    /// Another process holds the lease (an expected outcome for a standby).
    #[error("the lease is held by {holder}")]
    Held {
        /// The holder's id, as it wrote it.
        holder: String,
    },
    /// A renewal was refused: the key was written by someone else or
    /// expired since this process last renewed it.
    #[error("the lease was taken over or expired")]
    Taken,
    /// No renewal succeeded for this long, so the key may be about to
    /// expire.
    #[error("could not renew the lease for {0:?}")]
    Unreachable(Duration),
    /// A request to NATS failed or timed out.
    #[error("the lease request failed: {0}")]
    Request(#[source] async_nats::Error),
}

/// Whether this process may run an envoy, as the status shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseState {
    /// Another process holds the lease (or NATS cannot be reached): the
    /// envoy does not run here.
    Waiting,
    /// This process holds the lease and runs the envoy.
    Held,
}

impl LeaseState {
    /// `"waiting"` or `"held"`.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseState::Waiting => "waiting",
            LeaseState::Held => "held",
        }
    }
}

/// A [`LeaseState`] that the lease loop sets and the status routes read;
/// `None` for an envoy that runs without a lease.
#[derive(Debug, Default)]
pub struct LeaseFlag(AtomicU8);

impl LeaseFlag {
    /// The state now, if the envoy runs under a lease.
    pub fn get(&self) -> Option<LeaseState> {
        match self.0.load(Relaxed) {
            1 => Some(LeaseState::Waiting),
            2 => Some(LeaseState::Held),
            _ => None,
        }
    }

    /// Records `state`.
    pub fn set(&self, state: LeaseState) {
        self.0.store(
            match state {
                LeaseState::Waiting => 1,
                LeaseState::Held => 2,
            },
            Relaxed,
        );
    }
}

/// The lease bucket of one process, opened on first use and shared by the
/// leases of all its envoys.
#[derive(Clone, Debug)]
pub struct Leases {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: LeaseConfig,
    /// Set once connected; a failed attempt is retried by the next caller.
    bucket: tokio::sync::OnceCell<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    kv: kv::Store,
    /// The bucket's own `max_age`, which is what expires keys (it differs
    /// from the configured TTL if another process created the bucket with
    /// another `--lease-ttl`).
    ttl: Duration,
}

impl Leases {
    /// Leases under `config`. Nothing connects yet: the first
    /// [`Lease::try_acquire`] does, and retries do again, so a process
    /// started while NATS is down waits as a standby.
    ///
    /// # Errors
    /// [`LeaseError::Config`] from [`LeaseConfig::validate`].
    pub fn new(config: LeaseConfig) -> Result<Leases, LeaseError> {
        config.validate()?;
        Ok(Leases { inner: Arc::new(Inner { config, bucket: tokio::sync::OnceCell::new() }) })
    }

    /// This process's holder id.
    pub fn holder(&self) -> &str {
        &self.inner.config.holder
    }

    /// The lease on the envoy `name`.
    pub fn lease(&self, name: &str) -> Lease {
        Lease { leases: self.clone(), name: name.to_string(), key: key_for(name) }
    }

    async fn bucket(&self) -> Result<&Bucket, LeaseError> {
        self.inner.bucket.get_or_try_init(|| open(&self.inner.config)).await
    }
}

/// Connects and creates the bucket, or opens it if it exists.
async fn open(config: &LeaseConfig) -> Result<Bucket, LeaseError> {
    let servers = config.servers.join(",");
    let addrs: Vec<async_nats::ServerAddr> = config
        .servers
        .iter()
        .map(|s| s.parse())
        .collect::<Result<_, _>>()
        .map_err(|e| LeaseError::Config(format!("--lease: {e}")))?;
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(REQUEST_TIMEOUT)
        .name(format!("nodb envoy {}", config.holder))
        .connect(addrs)
        .await
        .map_err(|source| LeaseError::Connect { servers, source })?;
    let replicas = match config.replicas {
        Replicas::Exactly(n) => n,
        // The server lists the client URLs of every server in its cluster,
        // itself included.
        Replicas::Auto if client.server_info().connect_urls.len() >= 3 => 3,
        Replicas::Auto => 1,
    };
    let mut js = jetstream::new(client);
    js.set_timeout(REQUEST_TIMEOUT);
    // The stream a `create_key_value` would make, made directly: that call
    // first asks for the account's info, which async-nats 0.51 cannot read
    // from nats-server 2.9 (the version Debian ships).
    let wanted = jetstream::stream::Config {
        name: format!("KV_{BUCKET}"),
        description: Some("nodb envoy leases: one active instance per envoy name".into()),
        subjects: vec![format!("$KV.{BUCKET}.>")],
        max_messages_per_subject: 1,
        max_age: config.ttl,
        storage: jetstream::stream::StorageType::File,
        num_replicas: replicas,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: jetstream::stream::DiscardPolicy::New,
        ..Default::default()
    };
    // An existing bucket (made by another process, perhaps with another
    // TTL) is used as it is.
    js.get_or_create_stream(wanted).await.map_err(|e| LeaseError::Bucket(e.into()))?;
    let kv = js.get_key_value(BUCKET).await.map_err(|e| LeaseError::Bucket(e.into()))?;
    let status = kv.status().await.map_err(|e| LeaseError::Bucket(e.into()))?;
    let ttl = status.max_age();
    if ttl.is_zero() {
        return Err(LeaseError::Bucket("it exists without a max_age, so a lease would never expire".into()));
    }
    if ttl != config.ttl {
        tracing::warn!(bucket = BUCKET, ?ttl, wanted = ?config.ttl, "the lease bucket exists with another TTL; using it");
    }
    tracing::info!(bucket = BUCKET, ?ttl, replicas = status.info.config.num_replicas, "lease bucket ready");
    Ok(Bucket { kv, ttl })
}

/// The lease on one envoy name.
#[derive(Clone, Debug)]
pub struct Lease {
    leases: Leases,
    name: String,
    key: String,
}

impl Lease {
    /// The key of this lease in the bucket.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Takes the lease if no one holds it; the revision written.
    ///
    /// # Errors
    /// [`LeaseError::Held`] while another process holds it; a connection,
    /// bucket or request error otherwise.
    pub async fn try_acquire(&self) -> Result<u64, LeaseError> {
        let bucket = self.leases.bucket().await?;
        let holder = self.leases.holder();
        match timed(bucket.kv.create(&self.key, holder.to_string().into())).await? {
            Ok(revision) => Ok(revision),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => match self.current(bucket).await? {
                // An earlier create of ours whose answer was lost.
                Some((revision, h)) if h == holder => Ok(revision),
                Some((_, holder)) => Err(LeaseError::Held { holder }),
                // Gone since: try again at once.
                None => timed(bucket.kv.create(&self.key, holder.to_string().into()))
                    .await?
                    .map_err(|e| LeaseError::Request(e.into())),
            },
            Err(e) => Err(LeaseError::Request(e.into())),
        }
    }

    /// Renews the lease held at `revision`; the new revision.
    ///
    /// # Errors
    /// [`LeaseError::Taken`] if the key has changed or expired since;
    /// a request error otherwise (the lease may still be held).
    pub async fn renew(&self, revision: u64) -> Result<u64, LeaseError> {
        let bucket = self.leases.bucket().await?;
        let holder = self.leases.holder();
        match timed(bucket.kv.update(&self.key, holder.to_string().into(), revision)).await? {
            Ok(revision) => Ok(revision),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => match self.current(bucket).await? {
                // An earlier renewal of ours whose answer was lost.
                Some((revision, h)) if h == holder => Ok(revision),
                _ => Err(LeaseError::Taken),
            },
            Err(e) => Err(LeaseError::Request(e.into())),
        }
    }

    /// Gives the lease held at `revision` back, so a standby can take it
    /// at once. Does nothing if it has changed since.
    ///
    /// # Errors
    /// A request error.
    pub async fn release(&self, revision: u64) -> Result<(), LeaseError> {
        let bucket = self.leases.bucket().await?;
        match timed(bucket.kv.delete_expect_revision(&self.key, Some(revision))).await? {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == kv::DeleteErrorKind::WrongLastRevision => Ok(()),
            Err(e) => Err(LeaseError::Request(e.into())),
        }
    }

    /// The live value of the key, with its revision; `None` if it has
    /// expired or been deleted.
    async fn current(&self, bucket: &Bucket) -> Result<Option<(u64, String)>, LeaseError> {
        let entry = timed(bucket.kv.entry(&self.key)).await?.map_err(|e| LeaseError::Request(e.into()))?;
        Ok(entry
            .filter(|e| e.operation == kv::Operation::Put)
            .map(|e| (e.revision, String::from_utf8_lossy(&e.value).into_owned())))
    }

    /// Runs `work` only while this process holds the lease, until
    /// `shutdown`.
    ///
    /// Waits for the lease (retrying every TTL/3), then runs
    /// `work(token)` while renewing it. If the lease is lost, `token` is
    /// cancelled, the work is awaited (it should stop at once) and the
    /// lease is waited for again. When the work ends by itself (after
    /// `shutdown`, or with an error) the lease is released and its output
    /// returned; `None` if `shutdown` came while waiting. `flag` shows the
    /// state to the status routes.
    pub async fn hold_while<F, Fut, T>(&self, flag: &LeaseFlag, shutdown: &CancellationToken, mut work: F) -> Option<T>
    where
        F: FnMut(CancellationToken) -> Fut,
        Fut: Future<Output = T>,
    {
        loop {
            flag.set(LeaseState::Waiting);
            let revision = self.wait_for(shutdown).await?;
            flag.set(LeaseState::Held);
            tracing::info!(envoy = %self.name, holder = %self.leases.holder(), "holding the lease; the envoy runs here");
            let token = shutdown.child_token();
            let last = AtomicU64::new(revision);
            let running = work(token.clone());
            tokio::pin!(running);
            tokio::select! {
                output = &mut running => {
                    let revision = last.load(Relaxed);
                    if let Err(e) = self.release(revision).await {
                        tracing::warn!(envoy = %self.name, error = %e, "could not release the lease; it expires by itself");
                    } else {
                        tracing::info!(envoy = %self.name, "released the lease");
                    }
                    flag.set(LeaseState::Waiting);
                    return Some(output);
                }
                lost = self.keep(&last) => {
                    flag.set(LeaseState::Waiting);
                    tracing::warn!(envoy = %self.name, error = %lost, "lost the lease; the envoy stops here");
                    token.cancel();
                    running.await;
                }
            }
        }
    }

    /// Tries to acquire every TTL/3 until it does (the revision) or
    /// `shutdown` (`None`).
    async fn wait_for(&self, shutdown: &CancellationToken) -> Option<u64> {
        // The same holder or failure is logged once, not at every attempt.
        let mut said = String::new();
        loop {
            let said_now = match self.try_acquire().await {
                Ok(revision) => return Some(revision),
                Err(LeaseError::Held { holder }) => {
                    let line = format!("held by {holder}");
                    if line != said {
                        tracing::info!("waiting for the lease on envoy {} held by {holder}", self.name);
                    }
                    line
                }
                Err(e) => {
                    let line = e.to_string();
                    if line != said {
                        tracing::warn!(envoy = %self.name, error = %line, "waiting for the lease: NATS is not answering");
                    }
                    line
                }
            };
            said = said_now;
            tokio::select! {
                () = tokio::time::sleep(self.ttl() / 3) => {}
                () = shutdown.cancelled() => return None,
            }
        }
    }

    /// Renews every TTL/3, keeping the last revision in `last`, until the
    /// lease is lost; why.
    async fn keep(&self, last: &AtomicU64) -> LeaseError {
        let ttl = self.ttl();
        // When the key may expire, give or take the server's clock: a
        // TTL after the last successful renewal was *sent*. Give up a
        // quarter of the TTL before that.
        let mut renewed = Instant::now();
        let mut failing = false;
        loop {
            let deadline = renewed + ttl - ttl / 4;
            let next = if failing { Instant::now() + ttl / 12 } else { renewed + ttl / 3 };
            tokio::time::sleep_until(next.min(deadline)).await;
            let sent = Instant::now();
            match tokio::time::timeout_at(deadline, self.renew(last.load(Relaxed))).await {
                Ok(Ok(revision)) => {
                    last.store(revision, Relaxed);
                    renewed = sent;
                    if failing {
                        tracing::info!(envoy = %self.name, "renewing the lease again");
                    }
                    failing = false;
                }
                Ok(Err(LeaseError::Taken)) => return LeaseError::Taken,
                Ok(Err(e)) if Instant::now() < deadline => {
                    if !failing {
                        tracing::warn!(envoy = %self.name, error = %e, "could not renew the lease; retrying");
                    }
                    failing = true;
                }
                Ok(Err(_)) | Err(_) => return LeaseError::Unreachable(renewed.elapsed()),
            }
        }
    }

    /// The TTL the bucket applies (the configured one until it is open).
    fn ttl(&self) -> Duration {
        self.leases.inner.bucket.get().map_or(self.leases.inner.config.ttl, |b| b.ttl)
    }
}

/// Bounds one request by [`REQUEST_TIMEOUT`].
async fn timed<T>(request: impl Future<Output = T>) -> Result<T, LeaseError> {
    tokio::time::timeout(REQUEST_TIMEOUT, request)
        .await
        .map_err(|_| LeaseError::Request(format!("no answer within {REQUEST_TIMEOUT:?}").into()))
}

/// The key of envoy `name`: letters, digits, `-`, `_` and `/` as they are,
/// any other byte as `=XX` (hex), so that different names never share a
/// key (`.` separates subject tokens and is escaped too).
pub fn key_for(name: &str) -> String {
    let mut key = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'/') {
            key.push(char::from(b));
        } else {
            key.push_str(&format!("={b:02X}"));
        }
    }
    if key.is_empty() { "=".into() } else { key }
}

/// An id for this process as a holder: `host:pid:start time` (the start
/// time tells apart processes that reuse a pid).
pub fn holder_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into());
    let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    format!("{host}:{}:{started}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_valid_and_distinct() {
        let names = ["webhook", "a b", "a_b", "a.b", "a=2Eb", "", "ré", "-", "x/y"];
        let keys: Vec<String> = names.iter().map(|n| key_for(n)).collect();
        for k in &keys {
            assert!(!k.starts_with('.') && !k.ends_with('.') && !k.is_empty(), "{k}");
            assert!(k.bytes().all(|b| b.is_ascii_alphanumeric() || b"-/_=".contains(&b)), "{k}");
        }
        let distinct: std::collections::BTreeSet<&String> = keys.iter().collect();
        assert_eq!(distinct.len(), keys.len(), "{keys:?}");
        assert_eq!(key_for("webhook"), "webhook");
    }

    #[test]
    fn config_is_checked() {
        let ok = LeaseConfig { servers: vec!["nats://127.0.0.1:4222".into()], ..Default::default() };
        assert!(ok.validate().is_ok());
        assert!(LeaseConfig::default().validate().is_err());
        assert!(LeaseConfig { ttl: Duration::from_millis(500), ..ok.clone() }.validate().is_err());
        assert!(LeaseConfig { replicas: Replicas::Exactly(0), ..ok }.validate().is_err());
    }

    #[test]
    fn the_flag_starts_unset() {
        let flag = LeaseFlag::default();
        assert_eq!(flag.get(), None);
        flag.set(LeaseState::Held);
        assert_eq!(flag.get().map(LeaseState::as_str), Some("held"));
    }
}
