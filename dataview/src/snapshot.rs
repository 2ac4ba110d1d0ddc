//! Snapshots of an app's views through `object_store`: on the local
//! filesystem (with fsync) by default, or in any store `object_store` can
//! open from a URL (`s3://bucket/prefix`, configured by the usual `AWS_*`
//! environment variables, `memory://`).
//!
//! The views of an app change together, so one object holds every view at
//! one seq: `{app}/{seq:020}.snapshot`. The first line is a header with the
//! format version, the app, the seq, the view names and the BLAKE3 hash of
//! the rest; the rest is `{"view": state, …}`. Objects are written with
//! create-only semantics, so an existing snapshot is never overwritten
//! (unless it is damaged: then the next write at its seq replaces it); a
//! snapshot that fails its checksum is skipped with a warning at start-up.
//!
//! Data views of one app may share a store (several replicas on one
//! `s3://bucket/prefix`): they write the same bytes at the same seq (the
//! states serialize with sorted keys; only the chain hash may be missing
//! from one), so the one that finds a valid snapshot at its seq keeps it
//! as its own. A data view prunes only snapshots at or before its own seq,
//! and a restart passes over a snapshot pruned between the listing and the
//! read, so one's pruning never breaks another's restart.
//!
//! Snapshots at every multiple of the checkpoint interval (`--snapshot-every`)
//! are *checkpoints*, kept for good: an as-of read (`?at=N`) starts from the
//! checkpoint at or before N, so it replays fewer actions than the interval
//! (see [`crate::history`]). Of the other snapshots (timed, requested by
//! `@@nodb/snapshot`, at shutdown) only the newest few are kept.

use std::sync::Arc;

use futures_util::StreamExt;
use nodb_shared::Tree;
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::hub::ViewsAt;
use crate::redaction::{Redaction, Redactions};

/// The snapshot format this code writes and reads.
pub const FORMAT: u32 = 1;

/// Errors reading or writing snapshots.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The object store failed.
    #[error("snapshot storage: {0}")]
    Store(#[from] object_store::Error),
    /// The snapshot location is not a URL `object_store` can open.
    #[error("cannot open snapshot storage {location:?}: {reason}")]
    Location {
        /// The location given.
        location: String,
        /// Why.
        reason: String,
    },
    /// Serialising the states failed (the task writing them panicked).
    #[error("could not serialise the snapshot: {0}")]
    Encode(String),
    /// The snapshot directory could not be created.
    #[error("cannot create the snapshot directory {path}: {source}")]
    Dir {
        /// The directory.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// How long a snapshot waits for the chronicler's chain hash at its seq.
const ANCHOR_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Serialize, Deserialize)]
struct Header {
    format: u32,
    app: String,
    seq: u64,
    views: Vec<String>,
    blake3: String,
    /// The chronicler's chain hash after `seq` when the snapshot was
    /// written (absent if it could not be asked), so that a data view
    /// restored from it can check that it follows the same history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    chain: Option<String>,
    /// The redactions the states reflect (see [`crate::redaction`]); when
    /// there are any, `blake3` covers them too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    redactions: Vec<Redaction>,
}

/// A snapshot read back: every view at one seq, with the redactions they
/// reflect.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The seq.
    pub seq: u64,
    /// The states of the views asked for (`None`: the snapshot lacks it).
    pub states: Vec<Option<Tree>>,
    /// The redactions the states reflect.
    pub redactions: Redactions,
    /// The chronicler's chain hash after `seq` the snapshot recorded, if
    /// it did.
    pub chain: Option<String>,
}

/// Where an app's snapshots live.
#[derive(Clone, Debug)]
pub struct Snapshots {
    store: Arc<dyn ObjectStore>,
    app: String,
    keep: usize,
    /// Snapshots at multiples of this are checkpoints, never pruned.
    checkpoint_every: Option<u64>,
    /// The chroniclers, asked for the chain hash at each snapshot's seq.
    anchor: Option<Arc<crate::follow::Chroniclers>>,
}

impl Snapshots {
    /// Snapshots of `app` at `location`: a URL with a scheme
    /// (`s3://bucket/prefix`, `memory://`, `file:///dir`) or a local
    /// directory. Stores other than the local filesystem take their
    /// settings from `AWS_*`-style environment variables (for S3:
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
    /// `AWS_ENDPOINT` and `AWS_ALLOW_HTTP` for an S3-compatible server).
    ///
    /// # Errors
    /// If the location cannot be opened.
    pub fn open(location: &str, app: &str, keep: usize) -> Result<Snapshots, SnapshotError> {
        let bad = |reason: String| SnapshotError::Location { location: location.to_string(), reason };
        if !location.contains("://") {
            return Snapshots::local(std::path::Path::new(location), app, keep);
        }
        let url = url::Url::parse(location).map_err(|e| bad(e.to_string()))?;
        if url.scheme() == "file" {
            let dir = url.to_file_path().map_err(|()| bad("not a local path".into()))?;
            return Snapshots::local(&dir, app, keep);
        }
        let options = std::env::vars().filter(|(k, _)| k.starts_with("AWS_")).map(|(k, v)| (k.to_ascii_lowercase(), v));
        let (store, prefix) = object_store::parse_url_opts(&url, options).map_err(|e| bad(e.to_string()))?;
        let store: Arc<dyn ObjectStore> = if prefix.as_ref().is_empty() {
            Arc::from(store)
        } else {
            Arc::new(object_store::prefix::PrefixStore::new(store, prefix))
        };
        Ok(Snapshots::new(store, app, keep))
    }

    /// Snapshots of `app` in the local directory `dir` (created if
    /// missing), written with fsync, keeping the newest `keep`.
    ///
    /// # Errors
    /// If the directory cannot be created or opened.
    pub fn local(dir: &std::path::Path, app: &str, keep: usize) -> Result<Snapshots, SnapshotError> {
        std::fs::create_dir_all(dir)
            .map_err(|source| SnapshotError::Dir { path: dir.display().to_string(), source })?;
        let fs = LocalFileSystem::new_with_prefix(dir)?.with_fsync(true);
        Ok(Snapshots::new(Arc::new(fs), app, keep))
    }

    /// Snapshots of `app` in any object store.
    pub fn new(store: Arc<dyn ObjectStore>, app: &str, keep: usize) -> Snapshots {
        Snapshots { store, app: app.to_string(), keep: keep.max(1), checkpoint_every: None, anchor: None }
    }

    /// Keeps the snapshots at every multiple of `every` (the checkpoints)
    /// for good; [`Snapshots::prune`] removes only the others.
    #[must_use]
    pub fn with_checkpoints(mut self, every: u64) -> Snapshots {
        self.checkpoint_every = Some(every).filter(|e| *e > 0);
        self
    }

    /// Records in each snapshot the chain hash the chroniclers give for its
    /// seq (`GET /head?at=`; the follower's chronicler first, then the
    /// others in turn), checked when a data view restores it.
    #[must_use]
    pub fn with_anchor(mut self, chroniclers: Arc<crate::follow::Chroniclers>) -> Snapshots {
        self.anchor = Some(chroniclers);
        self
    }

    /// The checkpoint interval, if there is one.
    pub fn checkpoint_every(&self) -> Option<u64> {
        self.checkpoint_every
    }

    /// Whether the snapshot at `seq` is a checkpoint (kept for good).
    pub fn is_checkpoint(&self, seq: u64) -> bool {
        self.checkpoint_every.is_some_and(|every| seq > 0 && seq.is_multiple_of(every))
    }

    fn path(&self, seq: u64) -> StorePath {
        StorePath::from(format!("{}/{seq:020}.snapshot", self.app))
    }

    /// Writes the views at `seq`, which reflect `redactions`. `Ok(false)`
    /// if a snapshot of that seq already exists (it is never overwritten).
    ///
    /// # Errors
    /// If the store fails.
    pub async fn write(
        &self,
        seq: u64,
        names: &[String],
        states: &[Tree],
        redactions: &Redactions,
    ) -> Result<bool, SnapshotError> {
        let chain = match &self.anchor {
            // Never held up for long: a snapshot without it is still good.
            Some(c) if seq > 0 => {
                match tokio::time::timeout(ANCHOR_WAIT, c.ask(|c| async move { c.anchor(Some(seq)).await })).await {
                    Ok(Ok(found)) => found.map(|a| a.hash),
                    Ok(Err(e)) => {
                        tracing::debug!(seq, error = %e, "no chain hash for a snapshot");
                        None
                    }
                    Err(_) => None,
                }
            }
            _ => None,
        };
        // Serialising whole states takes tens of milliseconds: off the
        // runtime's workers, which serve `/health` and the clients.
        let (app, owned, states, redactions) = (self.app.clone(), names.to_vec(), states.to_vec(), redactions.clone());
        let body = tokio::task::spawn_blocking(move || encode(&app, seq, &owned, &states, chain, &redactions))
            .await
            .map_err(|e| SnapshotError::Encode(e.to_string()))?;
        let path = self.path(seq);
        // Data views of one app may share the store: they reach the same
        // seqs and write the same states there, so a snapshot another one
        // wrote first is as good as this one (create-only: neither is
        // overwritten), unless it is damaged.
        for _ in 0..3 {
            let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
            match self.store.put_opts(&path, PutPayload::from(body.clone()), opts).await {
                Ok(_) => return Ok(true),
                Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            match self.there(&path, seq, names, &body).await? {
                There::Good => return Ok(false),
                // A create that lost a race with one that failed (S3
                // answers 409 while another conditional write is under
                // way): try again.
                There::Missing => continue,
                There::Damaged(why) => {
                    tracing::warn!(seq, app = %self.app, "replacing a damaged snapshot: {why}");
                    let opts = PutOptions { mode: PutMode::Overwrite, ..Default::default() };
                    self.store.put_opts(&path, PutPayload::from(body), opts).await?;
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// What is in the store at `path` (the snapshot at `seq`), where this
    /// data view meant to write `ours`.
    async fn there(&self, path: &StorePath, seq: u64, names: &[String], ours: &[u8]) -> Result<There, SnapshotError> {
        let bytes = match self.store.get(path).await {
            Ok(found) => match found.bytes().await {
                Ok(bytes) => bytes,
                Err(object_store::Error::NotFound { .. }) => return Ok(There::Missing),
                Err(e) => return Err(e.into()),
            },
            Err(object_store::Error::NotFound { .. }) => return Ok(There::Missing),
            Err(e) => return Err(e.into()),
        };
        // One a newer data view wrote in a format this one cannot read is
        // theirs to keep.
        if let Some(h) = header(&bytes)
            && h.format != FORMAT
        {
            tracing::warn!(seq, app = %self.app, format = h.format, "a snapshot in another format is already at this seq");
            return Ok(There::Good);
        }
        if let Err(why) = decode(&bytes, &self.app, seq, names) {
            return Ok(There::Damaged(why));
        }
        // The same states give the same bytes (object keys are sorted, the
        // views in the app's order); only the chain hash may be missing
        // from one of them. Different states at one seq mean data views of
        // different histories or app versions share the store.
        if header(&bytes).map(|h| h.blake3) != header(ours).map(|h| h.blake3) {
            tracing::warn!(seq, app = %self.app, "another data view wrote different states at this seq; keeping theirs");
        } else {
            tracing::debug!(seq, "the same snapshot is already there");
        }
        Ok(There::Good)
    }

    /// The seqs of the snapshots kept, newest first.
    ///
    /// # Errors
    /// If the store fails.
    pub async fn list(&self) -> Result<Vec<u64>, SnapshotError> {
        let prefix = StorePath::from(self.app.as_str());
        let mut seqs = Vec::new();
        let mut listing = self.store.list(Some(&prefix));
        while let Some(meta) = listing.next().await {
            let meta = meta?;
            if let Some(seq) =
                meta.location.filename().and_then(|f| f.strip_suffix(".snapshot")).and_then(|s| s.parse::<u64>().ok())
            {
                seqs.push(seq);
            }
        }
        seqs.sort_unstable_by(|a, b| b.cmp(a));
        Ok(seqs)
    }

    /// The snapshot at exactly `seq`: the states of `names` (a view the
    /// snapshot lacks gets `None`); `None` if there is none, or it was
    /// pruned meanwhile, or it is damaged (skipped with a warning).
    ///
    /// # Errors
    /// If the store fails.
    pub async fn load(&self, names: &[String], seq: u64) -> Result<Option<Vec<Option<Tree>>>, SnapshotError> {
        Ok(self.load_at(names, seq).await?.map(|l| l.states))
    }

    /// [`Snapshots::load`], with the redactions the states reflect.
    ///
    /// # Errors
    /// If the store fails.
    pub async fn load_at(&self, names: &[String], seq: u64) -> Result<Option<Loaded>, SnapshotError> {
        let bytes = match self.store.get(&self.path(seq)).await {
            Ok(found) => match found.bytes().await {
                Ok(bytes) => bytes,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(e.into()),
            },
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        match decode(&bytes, &self.app, seq, names) {
            Ok((states, redactions)) => {
                Ok(Some(Loaded { seq, states, redactions, chain: header(&bytes).and_then(|h| h.chain) }))
            }
            Err(why) => {
                tracing::warn!(seq, app = %self.app, "skipping a damaged snapshot: {why}");
                Ok(None)
            }
        }
    }

    /// The chronicler's chain hash the snapshot at `seq` recorded, if it
    /// recorded one (and can be read).
    ///
    /// # Errors
    /// If the store fails.
    pub async fn chain_at(&self, seq: u64) -> Result<Option<String>, SnapshotError> {
        let bytes = match self.store.get(&self.path(seq)).await {
            Ok(found) => found.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(header(&bytes).and_then(|h| h.chain))
    }

    /// The newest valid snapshot: its seq and the states of `names` (a view
    /// the snapshot lacks gets `None`). Corrupt snapshots are skipped with a
    /// warning.
    ///
    /// # Errors
    /// If the store fails.
    pub async fn load_latest(&self, names: &[String]) -> Result<Option<Loaded>, SnapshotError> {
        self.load_at_or_before(names, u64::MAX).await
    }

    /// The newest valid snapshot at or before `at`. One pruned between the
    /// listing and the read is passed over, like a damaged one.
    ///
    /// # Errors
    /// If the store fails.
    pub async fn load_at_or_before(&self, names: &[String], at: u64) -> Result<Option<Loaded>, SnapshotError> {
        self.load_newest(names, at, |_| true).await
    }

    /// The newest valid snapshot at or before `at` whose seq `fits`.
    ///
    /// # Errors
    /// If the store fails.
    pub async fn load_newest(
        &self,
        names: &[String],
        at: u64,
        fits: impl Fn(u64) -> bool,
    ) -> Result<Option<Loaded>, SnapshotError> {
        for seq in self.list().await?.into_iter().filter(|s| *s <= at && fits(*s)) {
            if let Some(loaded) = self.load_at(names, seq).await? {
                return Ok(Some(loaded));
            }
        }
        Ok(None)
    }

    /// Deletes all but the newest `keep` snapshots that are neither
    /// checkpoints nor `kept` (the snapshots at redactions, say); how many
    /// were deleted. Checkpoints are never deleted.
    ///
    /// # Errors
    /// If the store fails.
    pub async fn prune(&self, kept: impl Fn(u64) -> bool) -> Result<usize, SnapshotError> {
        let seqs = self.list().await?;
        let mut deleted = 0;
        for seq in seqs.iter().filter(|s| !self.is_checkpoint(**s) && !kept(**s)).skip(self.keep) {
            match self.store.delete(&self.path(*seq)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => deleted += 1,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(deleted)
    }
}

/// What [`Snapshots::write`] found at a seq another writer took first.
enum There {
    /// A valid snapshot.
    Good,
    /// Nothing (any more).
    Missing,
    /// A snapshot that fails to decode, and why.
    Damaged(String),
}

/// The header line of a snapshot, if it can be read.
fn header(bytes: &[u8]) -> Option<Header> {
    let line = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    serde_json::from_slice(line).ok()
}

/// When the snapshotter writes.
#[derive(Clone, Debug)]
pub struct SnapshotPolicy {
    /// The checkpoint interval: a snapshot at every multiple of this seq,
    /// kept for good (the hub hands the states over as it passes them).
    pub every_seqs: u64,
    /// And one after this long, if anything changed.
    pub every: std::time::Duration,
}

/// Writes snapshots of the hub's views: the checkpoints and the
/// `@@nodb/snapshot`s the hub hands over (each at exactly its seq), one
/// every `policy.every` if anything changed, and a last one at shutdown;
/// prunes old ones after each round. Each write is logged at debug level,
/// with a summary line at most once a minute.
pub async fn run_snapshotter(
    hub: Arc<crate::hub::Hub>,
    snapshots: Snapshots,
    policy: SnapshotPolicy,
    mut last_written: u64,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let names = hub.view_names();
    let mut seq_rx = hub.seq();
    let mut tick = tokio::time::interval(policy.every);
    tick.tick().await;
    let mut summary = WriteSummary::new();
    loop {
        let (ticked, stopping) = tokio::select! {
            _ = seq_rx.changed() => (false, false),
            _ = tick.tick() => (true, false),
            () = shutdown.cancelled() => (false, true),
        };
        let mut due = hub.take_snapshot_requests();
        if ticked || stopping {
            let now = hub.current_views();
            if now.seq > last_written && due.iter().all(|v| v.seq != now.seq) {
                due.push(now);
            }
        }
        let wrote = !due.is_empty();
        for ViewsAt { seq, states, redactions } in due {
            let started = std::time::Instant::now();
            let written = snapshots.write(seq, &names, &states, &redactions).await;
            // The states may be the last holders of a version the views
            // have since moved on from: freeing it is as long as writing it.
            tokio::task::spawn_blocking(move || drop(states));
            match written {
                Ok(written) => {
                    last_written = last_written.max(seq);
                    if written {
                        tracing::debug!(seq, took = ?started.elapsed(), "snapshot written");
                        summary.wrote(seq, started.elapsed());
                    }
                }
                Err(e) => tracing::error!(seq, error = %e, "could not write a snapshot"),
            }
        }
        // The snapshots at redactions stay, like checkpoints: they are the
        // bases of reads after them (see `crate::redaction`). Those past
        // the views' seq, which other data views sharing the store wrote,
        // stay too: this one cannot know yet whether they are at
        // redactions.
        let at = hub.current_seq();
        let redactions = hub.redactions();
        if wrote && let Err(e) = snapshots.prune(|seq| seq > at || redactions.has(seq)).await {
            tracing::warn!(error = %e, "could not prune old snapshots");
        }
        summary.report(stopping);
        if stopping {
            return;
        }
    }
}

/// Snapshot writes since the last summary line.
struct WriteSummary {
    since: std::time::Instant,
    written: u64,
    latest: u64,
    slowest: std::time::Duration,
}

impl WriteSummary {
    fn new() -> WriteSummary {
        WriteSummary { since: std::time::Instant::now(), written: 0, latest: 0, slowest: Default::default() }
    }

    fn wrote(&mut self, seq: u64, took: std::time::Duration) {
        self.written += 1;
        self.latest = self.latest.max(seq);
        self.slowest = self.slowest.max(took);
    }

    /// A summary line once a minute (and at shutdown) if anything was written.
    fn report(&mut self, now: bool) {
        if self.written > 0 && (now || self.since.elapsed() >= std::time::Duration::from_secs(60)) {
            tracing::info!(written = self.written, latest = self.latest, slowest = ?self.slowest, "snapshots written");
            *self = WriteSummary::new();
        }
    }
}

/// The checksum of a snapshot's body and the redactions its states reflect
/// (the body alone when there are none, as before redactions existed).
fn checksum(body: &[u8], redactions: &[Redaction]) -> String {
    let mut hasher = blake3::Hasher::new();
    if !redactions.is_empty() {
        hasher.update(serde_json::to_string(redactions).unwrap_or_default().as_bytes());
        hasher.update(b"\n");
    }
    hasher.update(body);
    hasher.finalize().to_hex().to_string()
}

fn encode(
    app: &str,
    seq: u64,
    names: &[String],
    states: &[Tree],
    chain: Option<String>,
    redactions: &Redactions,
) -> Vec<u8> {
    let mut body = String::from("{");
    for (i, (name, state)) in names.iter().zip(states).enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&serde_json::to_string(name).unwrap_or_default());
        body.push(':');
        body.push_str(&state.to_json_string());
    }
    body.push('}');
    let header = Header {
        format: FORMAT,
        app: app.to_string(),
        seq,
        views: names.to_vec(),
        blake3: checksum(body.as_bytes(), redactions.ledger()),
        chain,
        redactions: redactions.ledger().to_vec(),
    };
    let mut out = serde_json::to_vec(&header).unwrap_or_default();
    out.push(b'\n');
    out.extend_from_slice(body.as_bytes());
    out
}

fn decode(bytes: &[u8], app: &str, seq: u64, names: &[String]) -> Result<(Vec<Option<Tree>>, Redactions), String> {
    let split = bytes.iter().position(|b| *b == b'\n').ok_or("no header line")?;
    let header: Header = serde_json::from_slice(&bytes[..split]).map_err(|e| format!("bad header: {e}"))?;
    let body = &bytes[split + 1..];
    if header.format != FORMAT {
        return Err(format!("format {} (this version reads {FORMAT})", header.format));
    }
    if header.app != app || header.seq != seq {
        return Err(format!("it is app {:?} at seq {}, not what its name says", header.app, header.seq));
    }
    if checksum(body, &header.redactions) != header.blake3 {
        return Err("checksum mismatch".into());
    }
    let mut views: std::collections::BTreeMap<String, Tree> =
        serde_json::from_slice(body).map_err(|e| format!("bad body: {e}"))?;
    let states = names.iter().map(|n| views.remove(n)).collect();
    Ok((states, Redactions::from_ledger(header.redactions)))
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn names() -> Vec<String> {
        vec!["stock".into(), "activity".into()]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Any bytes at all: the snapshot decoder answers, never panics
        /// (deep nesting included: serde_json stops at 128 levels).
        #[test]
        fn any_bytes_are_decoded_or_refused(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes, "warehouse", 7, &names());
        }

        /// A written snapshot with one byte changed is refused, or (a change
        /// in the header's whitespace or key order that means the same)
        /// decodes to the same states and redactions; never to others.
        #[test]
        fn a_damaged_snapshot_is_refused(
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            n in 0u64..1000,
            redacted in any::<bool>(),
        ) {
            let states = vec![Tree::from(serde_json::json!({"products": {"apple": {"total": n}}})), Tree::from(serde_json::json!([n]))];
            let redactions = if redacted {
                Redactions::from_ledger(vec![Redaction { seq: 6, seqs: vec![2, 4], undo: false, reason: "typo".into() }])
            } else {
                Redactions::default()
            };
            let mut bytes = encode("warehouse", 7, &names(), &states, None, &redactions);
            let i = at.index(bytes.len());
            prop_assume!(bytes[i] != byte);
            bytes[i] = byte;
            if let Ok(decoded) = decode(&bytes, "warehouse", 7, &names()) {
                prop_assert_eq!(decoded, (states.into_iter().map(Some).collect::<Vec<_>>(), redactions));
            }
        }

        /// Nesting far deeper than serde's limit is refused, not a crash.
        #[test]
        fn deep_nesting_is_refused(depth in 100usize..5000) {
            let body = format!("{{\"stock\":{}{}}}", "[".repeat(depth), "]".repeat(depth));
            let header = serde_json::json!({
                "format": FORMAT, "app": "warehouse", "seq": 7, "views": names(),
                "blake3": blake3::hash(body.as_bytes()).to_hex().to_string(),
            });
            let bytes = format!("{header}\n{body}").into_bytes();
            let decoded = decode(&bytes, "warehouse", 7, &names());
            prop_assert_eq!(decoded.is_ok(), depth < 127, "depth {}", depth);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A ledger with one redaction before `seq`.
    fn ledger(seq: u64) -> Redactions {
        Redactions::from_ledger(vec![Redaction {
            seq: seq - 1,
            seqs: vec![1, seq - 2],
            undo: false,
            reason: "r".into(),
        }])
    }

    #[tokio::test]
    async fn write_load_prune_and_skip_damage() {
        let dir = tempfile::tempdir().unwrap();
        let snaps = Snapshots::local(dir.path(), "warehouse", 2).unwrap();
        let names = vec!["stock".to_string(), "activity".to_string()];
        for seq in [10, 20, 30] {
            let states = vec![Tree::from(json!({"seq": seq})), Tree::from(json!([seq]))];
            assert!(snaps.write(seq, &names, &states, &ledger(seq)).await.unwrap());
        }
        // Create-only: an existing snapshot is never overwritten.
        assert!(!snaps.write(30, &names, &[Tree::Null, Tree::Null], &Redactions::default()).await.unwrap());
        let Loaded { seq, states, redactions, .. } = snaps.load_latest(&names).await.unwrap().unwrap();
        assert_eq!(seq, 30);
        assert_eq!(states[0], Some(Tree::from(json!({"seq": 30}))));
        assert_eq!(redactions, ledger(30), "the redactions come back with the states");
        // Damage the newest: the one before it is used.
        let path = dir.path().join("warehouse").join(format!("{:020}.snapshot", 30));
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(snaps.load_latest(&names).await.unwrap().unwrap().seq, 20);
        assert_eq!(snaps.prune(|_| false).await.unwrap(), 1);
        assert_eq!(snaps.list().await.unwrap(), vec![30, 20]);
    }

    #[tokio::test]
    async fn checkpoints_are_never_pruned_and_a_missing_one_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let snaps = Snapshots::local(dir.path(), "json", 1).unwrap().with_checkpoints(100);
        let names = vec!["doc".to_string()];
        for seq in [100, 150, 200, 250, 260, 300] {
            snaps.write(seq, &names, &[Tree::from(json!({"seq": seq}))], &Redactions::default()).await.unwrap();
        }
        // 150 is kept as the caller asks (a redaction's, say).
        snaps.prune(|seq| seq == 150).await.unwrap();
        assert_eq!(snaps.list().await.unwrap(), vec![300, 260, 200, 150, 100]);
        snaps.prune(|_| false).await.unwrap();
        assert_eq!(snaps.list().await.unwrap(), vec![300, 260, 200, 100]);
        assert_eq!(snaps.load(&names, 200).await.unwrap(), Some(vec![Some(Tree::from(json!({"seq": 200})))]));
        assert_eq!(snaps.load(&names, 150).await.unwrap(), None);
        assert_eq!(snaps.load_at_or_before(&names, 299).await.unwrap().unwrap().seq, 260);
        assert_eq!(snaps.load_newest(&names, 299, |seq| seq < 200).await.unwrap().unwrap().seq, 100);
    }

    /// Issue 17: data views of one app sharing a store write the same
    /// snapshot at the same seq. The second write finds the first's, which
    /// is the same states (the same bytes but perhaps the chain hash), and
    /// keeps it; a damaged one there is replaced.
    #[tokio::test]
    async fn data_views_sharing_a_store_write_each_seq_once_and_replace_a_damaged_one() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let (one, two) = (Snapshots::new(store.clone(), "warehouse", 2), Snapshots::new(store.clone(), "warehouse", 2));
        let names = vec!["stock".to_string(), "activity".to_string()];
        let states = vec![Tree::from(json!({"b": 2, "a": [1, {"z": 0, "y": 1}]})), Tree::from(json!([7]))];
        let ledger = ledger(7);
        let a = encode("warehouse", 7, &names, &states, None, &ledger);
        // Keys in another order (as another data view may have built them):
        // the same bytes.
        let built_otherwise = vec![Tree::from(json!({"a": [1, {"y": 1, "z": 0}], "b": 2})), Tree::from(json!([7]))];
        assert_eq!(a, encode("warehouse", 7, &names, &built_otherwise, None, &ledger), "the same bytes");
        let (x, y) = tokio::join!(one.write(7, &names, &states, &ledger), two.write(7, &names, &states, &ledger));
        assert_eq!([x.unwrap(), y.unwrap()].iter().filter(|w| **w).count(), 1, "one write wins, the other is fine");
        assert_eq!(store.get(&one.path(7)).await.unwrap().bytes().await.unwrap().as_ref(), a.as_slice());
        // Damage it: the next write replaces it.
        store.put(&one.path(7), PutPayload::from(b"{} damaged".to_vec())).await.unwrap();
        assert!(one.load_latest(&names).await.unwrap().is_none());
        assert!(two.write(7, &names, &states, &ledger).await.unwrap(), "a damaged snapshot is replaced");
        assert_eq!(one.load_latest(&names).await.unwrap().unwrap().states[0], Some(states[0].clone()));
    }
}
