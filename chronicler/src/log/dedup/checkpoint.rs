//! A checkpoint of the exactly-once table, so start-up does not rebuild
//! it by hashing every record's content again.
//!
//! The file `dedup.checkpoint` in the log directory holds the table as it
//! was after seq `seq`, whose chain hash was `hash`:
//!
//! ```text
//! file   = "NODBDDP\0" | version u32 | seq u64 | hash [32] | clients u64 | client* | blake3 [32]
//! client = name_len u16 | name | n u64 | seq u64 | content [16] | ring_len u8 | (seq u64 | content [16])*
//! ```
//!
//! All integers are little-endian; the BLAKE3 at the end covers every byte
//! before it. It is written under a temporary name, synced, renamed and its
//! directory synced, so the file is always whole.
//!
//! On start, [`Rebuild`] takes the checkpoint if its seq is in the log and
//! the log's chain hash there is `hash` (the same history, not merely a
//! log of the same length); it then records only the records after `seq`.
//! A checkpoint that is missing, damaged or of another history is passed
//! over, and the table is built from every record as before.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{DedupTable, Recent, Ring, content_hash};
use crate::log::record::{Hash, StoredRecord};

/// The checkpoint's file name in the log directory.
pub const FILE: &str = "dedup.checkpoint";

/// The name it is written under before the rename. Not `.tmp`: segment
/// listing removes those, and `nodb log verify` may list a live log.
const PART: &str = "dedup.checkpoint.part";

const MAGIC: &[u8; 8] = b"NODBDDP\0";
const VERSION: u32 = 1;

/// A checkpoint read back: the table after `seq`, and the chain hash there.
#[derive(Debug)]
pub struct Checkpoint {
    /// The table as it was after `seq`.
    pub table: DedupTable,
    /// The last seq the table includes.
    pub seq: u64,
    /// The log's chain hash after `seq`.
    pub hash: Hash,
}

/// The path of the checkpoint of the log in `dir`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// Saves `table`, which includes every record up to `seq` (chain hash
/// `hash`) and nothing after, as the checkpoint of the log in `dir`,
/// replacing any older one atomically.
///
/// # Errors
/// I/O errors; the previous checkpoint, if any, is then left as it was.
pub fn save(dir: &Path, table: &DedupTable, seq: u64, hash: &Hash) -> io::Result<()> {
    let part = dir.join(PART);
    let file = File::create(&part)?;
    let mut out = Hashed { inner: BufWriter::with_capacity(1 << 20, file), hasher: blake3::Hasher::new() };
    out.write_all(MAGIC)?;
    out.write_all(&VERSION.to_le_bytes())?;
    out.write_all(&seq.to_le_bytes())?;
    out.write_all(hash)?;
    out.write_all(&(table.len() as u64).to_le_bytes())?;
    for (client, n, last, ring) in table.clients_for_save() {
        let name = client.as_bytes();
        // Client names are at most 256 bytes (`MAX_CLIENT_LEN`).
        let len = u16::try_from(name.len()).map_err(|_| io::Error::other("a client name over 64 KiB"))?;
        out.write_all(&len.to_le_bytes())?;
        out.write_all(name)?;
        out.write_all(&n.to_le_bytes())?;
        write_recent(&mut out, &last)?;
        // Rings hold at most `RECENT - 1` acks; a longer one would be cut.
        let ring_len = ring.map_or(0, |r| r.len());
        let count = ring_len.min(u8::MAX as usize);
        out.write_all(&[count as u8])?;
        for r in ring.into_iter().flatten().skip(ring_len - count) {
            write_recent(&mut out, r)?;
        }
    }
    let digest = out.hasher.finalize();
    let mut file = out.inner.into_inner().map_err(io::IntoInnerError::into_error)?;
    file.write_all(digest.as_bytes())?;
    file.sync_all()?;
    drop(file);
    fs::rename(&part, path(dir))?;
    File::open(dir)?.sync_all()
}

/// Reads the checkpoint of the log in `dir`: `None` if there is none.
///
/// # Errors
/// A sentence saying why the file cannot be used (damaged, another
/// version); I/O errors other than its absence.
pub fn load(dir: &Path) -> Result<Option<Checkpoint>, String> {
    let bytes = match fs::read(path(dir)) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read it: {e}")),
    };
    let Some(body_len) = bytes.len().checked_sub(32) else {
        return Err("it is too short".into());
    };
    let (body, digest) = bytes.split_at(body_len);
    if blake3::hash(body).as_bytes() != digest {
        return Err("its checksum does not match: it is damaged".into());
    }
    let mut r = Reader(body);
    if r.take(8)? != MAGIC {
        return Err("it is not a checkpoint of the exactly-once table".into());
    }
    let version = u32::from_le_bytes(r.array()?);
    if version != VERSION {
        return Err(format!("it has version {version}, not {VERSION}"));
    }
    let seq = r.u64()?;
    let hash: Hash = r.array()?;
    let count = r.u64()?;
    let mut table = DedupTable::default();
    // At least 41 bytes a client: a count the file cannot hold is damage.
    if count > (r.0.len() / 41) as u64 {
        return Err(format!("it claims {count} clients, more than it can hold"));
    }
    table.reserve(count as usize);
    for _ in 0..count {
        let len = u16::from_le_bytes(r.array()?) as usize;
        let name = std::str::from_utf8(r.take(len)?).map_err(|_| "a client name is not UTF-8".to_string())?;
        let n = r.u64()?;
        let last = r.recent()?;
        let ring_len = r.take(1)?[0] as usize;
        let ring = (0..ring_len).map(|_| r.recent()).collect::<Result<Ring, String>>()?;
        table.insert_loaded(name, n, last, ring);
    }
    if !r.0.is_empty() {
        return Err("it has bytes after its last client".into());
    }
    Ok(Some(Checkpoint { table, seq, hash }))
}

/// Builds the exactly-once table while recovery scans the log: from the
/// checkpoint when it belongs to this log, hashing only the records after
/// it; from every record otherwise.
pub struct Rebuild {
    table: DedupTable,
    /// The checkpoint's seq and hash, while it is still to be confirmed.
    from: Option<(u64, Hash)>,
    /// The checkpoint did not match the log: build it all again.
    mismatch: bool,
}

impl Rebuild {
    /// Starts from the checkpoint of the log in `dir`, if it has a usable
    /// one (a damaged one is logged and passed over).
    pub fn start(dir: &Path) -> Rebuild {
        match load(dir) {
            // A checkpoint before any record holds nothing: no need to
            // find its place.
            Ok(Some(c)) if c.seq == 0 => Rebuild::from_scratch(),
            Ok(Some(c)) => Rebuild { table: c.table, from: Some((c.seq, c.hash)), mismatch: false },
            Ok(None) => Rebuild::from_scratch(),
            Err(reason) => {
                tracing::warn!(file = %path(dir).display(), reason, "passing over the exactly-once checkpoint");
                Rebuild::from_scratch()
            }
        }
    }

    /// Starts from an empty table: every record is recorded.
    pub fn from_scratch() -> Rebuild {
        Rebuild { table: DedupTable::default(), from: None, mismatch: false }
    }

    /// Takes the next record of the scan, in log order.
    pub fn record(&mut self, rec: &StoredRecord) {
        if let Some((seq, hash)) = self.from {
            if rec.seq < seq {
                return;
            }
            if rec.seq == seq {
                self.mismatch |= rec.hash != hash;
                self.from = None;
                return;
            }
            // A seq past the checkpoint's without meeting it.
            self.mismatch = true;
            self.from = None;
        }
        if self.mismatch {
            return;
        }
        if let Ok(id) = rec.id.parse() {
            // Hashed from the stored bytes, as the writer hashed them.
            self.table.record(&id, rec.seq, content_hash(&rec.json));
        }
    }

    /// The table, once the scan has reached the log's head: `None` if the
    /// checkpoint turned out to be of another history (or ahead of this
    /// log), and the records must be scanned again into
    /// [`Rebuild::from_scratch`].
    pub fn finish(self) -> Option<DedupTable> {
        (self.from.is_none() && !self.mismatch).then_some(self.table)
    }
}

/// A writer that also hashes what it writes.
struct Hashed<W> {
    inner: W,
    hasher: blake3::Hasher,
}

impl<W: Write> Write for Hashed<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn write_recent(out: &mut impl Write, r: &Recent) -> io::Result<()> {
    out.write_all(&r.seq.to_le_bytes())?;
    out.write_all(&r.content)
}

/// Reads a checkpoint's fields, failing with a sentence at its end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("it ends in the middle of a client".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn recent(&mut self) -> Result<Recent, String> {
        Ok(Recent { seq: self.u64()?, content: self.array()? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nodb_shared::protocol::ActionId;

    fn id(s: &str) -> ActionId {
        s.parse().unwrap()
    }

    /// A table of clients with 1, 2, … 70 actions (rings of every length).
    fn sample() -> (DedupTable, Vec<String>) {
        let mut t = DedupTable::default();
        let mut seq = 0;
        let clients: Vec<String> = (1..=70).map(|c| format!("client-{c}é")).collect();
        for (c, name) in clients.iter().enumerate() {
            for n in 1..=(c as u64 + 1) {
                seq += 1;
                t.record(&id(&format!("{name}:{n}")), seq, [seq as u8; 16]);
            }
        }
        (t, clients)
    }

    #[test]
    fn a_saved_table_loads_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_none());
        let (t, clients) = sample();
        save(dir.path(), &t, 2485, &[9; 32]).unwrap();
        let c = load(dir.path()).unwrap().unwrap();
        assert_eq!((c.seq, c.hash, c.table.len()), (2485, [9; 32], t.len()));
        for name in &clients {
            assert_eq!(c.table.entry(name), t.entry(name), "{name}");
        }
        assert!(!dir.path().join(PART).exists());
        // Saving again replaces it.
        save(dir.path(), &DedupTable::default(), 0, &[0; 32]).unwrap();
        assert_eq!(load(dir.path()).unwrap().unwrap().table.len(), 0);
    }

    #[test]
    fn a_damaged_checkpoint_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (t, _) = sample();
        save(dir.path(), &t, 7, &[1; 32]).unwrap();
        let good = fs::read(path(dir.path())).unwrap();
        for at in [0, 9, 20, good.len() / 2, good.len() - 1] {
            let mut bad = good.clone();
            bad[at] ^= 1;
            fs::write(path(dir.path()), &bad).unwrap();
            assert!(load(dir.path()).unwrap_err().contains("damaged"), "byte {at}");
        }
        for cut in [0, 10, good.len() - 33] {
            fs::write(path(dir.path()), &good[..cut]).unwrap();
            assert!(load(dir.path()).is_err(), "cut at {cut}");
            // Start-up passes over it.
            assert!(Rebuild::start(dir.path()).from.is_none());
        }
    }

    fn rec(seq: u64, id: &str) -> StoredRecord {
        let json = format!(r#"{{"seq":{seq},"ts":1,"id":"{id}","type":"t","payload":null}}"#);
        StoredRecord { seq, hash: [seq as u8; 32], id: id.into(), json: json.into() }
    }

    #[test]
    fn rebuild_takes_a_matching_checkpoint_and_records_only_what_follows() {
        let records: Vec<StoredRecord> = (1..=6).map(|s| rec(s, &format!("c:{s}"))).collect();
        let dir = tempfile::tempdir().unwrap();
        let mut full = Rebuild::from_scratch();
        records.iter().for_each(|r| full.record(r));
        let full = full.finish().unwrap();
        // The table after seq 4, as the writer would have saved it.
        let mut at4 = Rebuild::from_scratch();
        records[..4].iter().for_each(|r| at4.record(r));
        save(dir.path(), &at4.finish().unwrap(), 4, &[4; 32]).unwrap();
        let mut r = Rebuild::start(dir.path());
        records.iter().for_each(|rec| r.record(rec));
        let t = r.finish().unwrap();
        assert_eq!(t.entry("c"), full.entry("c"));
        assert_eq!(t.check(&id("c:7")), crate::log::dedup::Check::Next);
        // The checkpoint is of another history: the chain hash differs.
        save(dir.path(), &DedupTable::default(), 4, &[5; 32]).unwrap();
        let mut r = Rebuild::start(dir.path());
        records.iter().for_each(|rec| r.record(rec));
        assert!(r.finish().is_none());
        // The checkpoint is ahead of the log.
        save(dir.path(), &DedupTable::default(), 9, &[9; 32]).unwrap();
        let mut r = Rebuild::start(dir.path());
        records.iter().for_each(|rec| r.record(rec));
        assert!(r.finish().is_none());
        // A checkpoint of an empty log fits an empty log.
        save(dir.path(), &DedupTable::default(), 0, &[0; 32]).unwrap();
        assert!(Rebuild::start(dir.path()).finish().is_some());
    }

    /// What a checkpoint of a million clients costs to save and load (the
    /// alternative on start is hashing every record): run by hand with
    /// `cargo nextest run -p nodb-chronicler --run-ignored only --no-capture checkpoint_of_a_million`.
    #[test]
    #[ignore = "a measurement, run by hand"]
    fn checkpoint_of_a_million_clients() {
        let mut t = DedupTable::default();
        let mut seq = 0;
        for n in 1..=2 {
            for c in 0..1_000_000u64 {
                seq += 1;
                t.record(&id(&format!("client-{c:07}:{n}")), seq, [seq as u8; 16]);
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let start = std::time::Instant::now();
        save(dir.path(), &t, seq, &[1; 32]).unwrap();
        let saved = start.elapsed();
        let size = fs::metadata(path(dir.path())).unwrap().len();
        let start = std::time::Instant::now();
        let c = load(dir.path()).unwrap().unwrap();
        println!(
            "1M clients x 2 actions: checkpoint of {} MiB saved in {:.2} s, loaded in {:.2} s ({} clients)",
            size / (1024 * 1024),
            saved.as_secs_f64(),
            start.elapsed().as_secs_f64(),
            c.table.len()
        );
    }
}
