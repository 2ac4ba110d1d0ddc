//! Snapshots of an app's views through `object_store`: on the local
//! filesystem (with fsync) by default, or in any store `object_store` can
//! open from a URL (`s3://bucket/prefix`, configured by the usual `AWS_*`
//! environment variables, `memory://`).
//!
//! The views of an app change together, so one object holds every view at
//! one seq: `{app}/{seq:020}.snapshot`. The first line is a header with the
//! format version, the app, the seq, the view names, the BLAKE3 hash of
//! the rest and where its big objects can be cut (with a checksum of its
//! own; a load reads them on several threads: see `body`); the rest is
//! `{"view": state, …}`. Objects are written with
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
//! (see [`crate::history`]) — unless that checkpoint, reached in a catch-up
//! batch, gave way to a newer one while the snapshotter was busy (see
//! `Hub::request_snapshot`). Of the other snapshots (timed, requested by
//! `@@nodb/snapshot`, at shutdown) only the newest few are kept.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use futures_util::StreamExt;
use nodb_shared::Tree;
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::redaction::{Redaction, Redactions};

mod body;
mod snapshotter;
pub use snapshotter::{SnapshotPolicy, run_snapshotter};

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
    /// Where the body's big objects can be cut, to be read on several
    /// threads (see `body`); a reader that does not know them reads the
    /// body whole, as it is the same JSON either way.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    cuts: Vec<body::Cut>,
    /// The checksum of `cuts` (the body's covers the body alone): cuts
    /// that do not match it are passed over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cuts_blake3: Option<String>,
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
    /// The body of the last snapshot written (or, before any, of the
    /// first loaded), in bytes: the next one's buffer is made about that
    /// large at once, rather than grown (each growth copies it, into fresh
    /// memory).
    last_body: Arc<std::sync::atomic::AtomicUsize>,
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
        Snapshots {
            store,
            app: app.to_string(),
            last_body: Arc::default(),
            keep: keep.max(1),
            checkpoint_every: None,
            anchor: None,
        }
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

    /// Writes the views at `seq`, which reflect `redactions`, letting the
    /// states go as soon as they are serialised. `Ok(false)` if a
    /// snapshot of that seq already exists (it is never overwritten).
    ///
    /// # Errors
    /// If the store fails.
    pub async fn write(
        &self,
        seq: u64,
        names: &[String],
        states: Vec<Tree>,
        redactions: &Redactions,
    ) -> Result<bool, SnapshotError> {
        // Serialising whole states takes tens of milliseconds: off the
        // runtime's workers, which serve `/health` and the clients. The
        // states go as soon as they are serialised (on that thread: what
        // only they still hold is freed there), before the chain hash is
        // asked and the object written: while held, they share the
        // view's nodes, and every edit the view makes meanwhile copies
        // what it changes.
        let (owned, ledger) = (names.to_vec(), redactions.clone());
        let room = self.last_body.load(Relaxed);
        let body = tokio::task::spawn_blocking(move || {
            let body = Body::of(&owned, &states, &ledger, room);
            drop(states);
            body
        })
        .await
        .map_err(|e| SnapshotError::Encode(e.to_string()))?;
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
        let head = body.head(&self.app, seq, names, chain, redactions);
        let body = body.bytes;
        self.last_body.store(body.len(), Relaxed);
        // The header line and the body, as two chunks: neither is copied.
        let payload = PutPayload::from_iter([head.clone(), body]);
        let path = self.path(seq);
        // Data views of one app may share the store: they reach the same
        // seqs and write the same states there, so a snapshot another one
        // wrote first is as good as this one (create-only: neither is
        // overwritten), unless it is damaged.
        for _ in 0..3 {
            let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
            match self.store.put_opts(&path, payload.clone(), opts).await {
                Ok(_) => return Ok(true),
                Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            match self.there(&path, seq, names, &head).await? {
                There::Good => return Ok(false),
                // A create that lost a race with one that failed (S3
                // answers 409 while another conditional write is under
                // way): try again.
                There::Missing => continue,
                There::Damaged(why) => {
                    tracing::warn!(seq, app = %self.app, "replacing a damaged snapshot: {why}");
                    let opts = PutOptions { mode: PutMode::Overwrite, ..Default::default() };
                    self.store.put_opts(&path, payload, opts).await?;
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
                // Until one is written, a loaded snapshot tells the size
                // of the next one's body.
                let body = bytes.len() - bytes.iter().position(|b| *b == b'\n').map_or(0, |at| at + 1);
                let _ = self.last_body.compare_exchange(0, body, Relaxed, Relaxed);
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

/// A snapshot's body, serialised once into a buffer of `room` bytes (the
/// last body's size: a body grown by doubling is copied again at each
/// step), with its cuts and its checksum (which covers `redactions` too).
struct Body {
    bytes: bytes::Bytes,
    cuts: Vec<body::Cut>,
    blake3: String,
}

impl Body {
    fn of(names: &[String], states: &[Tree], redactions: &Redactions, room: usize) -> Body {
        let mut bytes = Vec::with_capacity(room.saturating_add(room / 8));
        let cuts = body::write(&mut bytes, names, states, body::CUT_EVERY);
        let blake3 = checksum(&bytes, redactions.ledger());
        Body { bytes: bytes.into(), cuts, blake3 }
    }

    /// The header line (with its newline) that goes before this body.
    fn head(
        &self,
        app: &str,
        seq: u64,
        names: &[String],
        chain: Option<String>,
        redactions: &Redactions,
    ) -> bytes::Bytes {
        let header = Header {
            format: FORMAT,
            app: app.to_string(),
            seq,
            views: names.to_vec(),
            blake3: self.blake3.clone(),
            chain,
            redactions: redactions.ledger().to_vec(),
            cuts_blake3: (!self.cuts.is_empty()).then(|| body::seal(&self.cuts)),
            cuts: self.cuts.clone(),
        };
        let mut head = serde_json::to_vec(&header).unwrap_or_default();
        head.push(b'\n');
        head.into()
    }
}

/// A snapshot's bytes: its header line (with the newline), then its body.
#[cfg(test)]
fn encode_parts(
    app: &str,
    seq: u64,
    names: &[String],
    states: &[Tree],
    chain: Option<String>,
    redactions: &Redactions,
) -> (bytes::Bytes, bytes::Bytes) {
    let body = Body::of(names, states, redactions, 0);
    (body.head(app, seq, names, chain, redactions), body.bytes)
}

/// [`encode_parts`] in one buffer, as the store keeps it.
#[cfg(test)]
fn encode(
    app: &str,
    seq: u64,
    names: &[String],
    states: &[Tree],
    chain: Option<String>,
    redactions: &Redactions,
) -> Vec<u8> {
    let (head, body) = encode_parts(app, seq, names, states, chain, redactions);
    [head, body].concat()
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
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let verify = || checksum(body, &header.redactions) == header.blake3;
    let cuts = body::sealed(&header.cuts, header.cuts_blake3.as_deref());
    let mut views = body::read(body, cuts, threads, verify)?;
    let states = names.iter().map(|n| views.remove(n)).collect();
    Ok((states, Redactions::from_ledger(header.redactions)))
}

#[cfg(test)]
#[path = "snapshot/tests.rs"]
mod tests;
