//! The head file: how far the log has reached, kept outside the segments.
//!
//! Segments alone cannot show that history is missing: delete the last
//! segment, or cut the active one at a record boundary, and what is left
//! still reads as a whole log. So after every durable write the writer
//! records its head seq and chain hash in `HEAD`, and recovery and
//! `nodb log verify` refuse a log whose segments end before it, or whose
//! chain hash at that seq differs.
//!
//! ```text
//! HEAD = slot 0 at offset 0 | slot 1 at offset 4096 (a page apart)
//! slot = magic "NODBHEAD" | seq: u64 LE | hash: [u8; 32] | crc: u32 LE (CRC32C of the 48 bytes before)
//! ```
//!
//! Writes alternate between the slots, so a write torn by a power cut
//! leaves the other slot whole; the valid slot with the higher seq counts.
//! The file is written after the segment's `fdatasync` and before anyone
//! is answered, so a process crash never leaves it behind an
//! acknowledged write, and it never runs ahead of the data on disk. It is
//! synced with the first write a second or more after its last sync, on a
//! roll and at shutdown: after a power cut it may trail the log (by the
//! writes since that sync), never lead it.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::record::Hash;

/// The file name, inside the log directory.
pub const FILE_NAME: &str = "HEAD";
const MAGIC: &[u8; 8] = b"NODBHEAD";
const SLOT_LEN: usize = 52;
/// A page apart, so no one sector or page write can tear both.
const SLOT_OFFSETS: [u64; 2] = [0, 4096];
/// How often, at most, the writer syncs the head file.
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// A recorded head: the log had reached `seq`, with chain hash `hash`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// The head seq.
    pub seq: u64,
    /// The chain hash after it.
    pub hash: Hash,
}

/// The head file's path in the log directory `dir`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

fn encode(r: &Recorded) -> [u8; SLOT_LEN] {
    let mut b = [0u8; SLOT_LEN];
    b[0..8].copy_from_slice(MAGIC);
    b[8..16].copy_from_slice(&r.seq.to_le_bytes());
    b[16..48].copy_from_slice(&r.hash);
    let crc = crc32c::crc32c(&b[0..48]);
    b[48..52].copy_from_slice(&crc.to_le_bytes());
    b
}

fn decode(b: &[u8]) -> Option<Recorded> {
    if b.len() < SLOT_LEN || &b[0..8] != MAGIC || crc32c::crc32c(&b[0..48]).to_le_bytes() != b[48..52] {
        return None;
    }
    let seq = u64::from_le_bytes(b[8..16].try_into().ok()?);
    let mut hash = [0; 32];
    hash.copy_from_slice(&b[16..48]);
    Some(Recorded { seq, hash })
}

/// Reads the head file in `dir`: `Ok(None)` when there is none (a log
/// written before head files existed, or one that never had a write).
///
/// # Errors
/// A sentence saying what is wrong when the file exists but no slot in it
/// is valid, or it cannot be read.
pub fn read(dir: &Path) -> Result<Option<Recorded>, String> {
    let path = path(dir);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    if bytes.iter().all(|&b| b == 0) {
        return Ok(None);
    }
    let best = SLOT_OFFSETS.iter().filter_map(|&at| bytes.get(at as usize..).and_then(decode)).max_by_key(|r| r.seq);
    best.map(Some).ok_or_else(|| {
        format!(
            "{} is damaged (neither of its two slots is valid), so how far the log reached is unknown",
            path.display()
        )
    })
}

/// The writer's handle on the head file.
pub struct HeadFile {
    file: File,
    next_slot: usize,
    last_sync: Instant,
    dirty: bool,
}

impl HeadFile {
    /// Opens the head file in `dir` (creating it), and records `now` in it
    /// durably.
    ///
    /// # Errors
    /// I/O errors.
    pub fn open(dir: &Path, now: Recorded) -> io::Result<HeadFile> {
        let path = path(dir);
        let existed = path.exists();
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)?;
        let mut head = HeadFile { file, next_slot: 0, last_sync: Instant::now(), dirty: false };
        // Both slots, so neither holds anything older than `now`.
        head.write(now)?;
        head.write(now)?;
        head.sync()?;
        if !existed {
            super::segment::sync_dir(dir)?;
        }
        Ok(head)
    }

    /// Records `now` (not yet durably: see [`HeadFile::sync_if_due`]).
    ///
    /// # Errors
    /// I/O errors.
    pub fn write(&mut self, now: Recorded) -> io::Result<()> {
        self.file.write_all_at(&encode(&now), SLOT_OFFSETS[self.next_slot])?;
        self.next_slot ^= 1;
        self.dirty = true;
        Ok(())
    }

    /// Syncs the file if it changed and the last sync is a second old.
    ///
    /// # Errors
    /// I/O errors.
    pub fn sync_if_due(&mut self) -> io::Result<()> {
        if self.dirty && self.last_sync.elapsed() >= SYNC_EVERY { self.sync() } else { Ok(()) }
    }

    /// Syncs the file now.
    ///
    /// # Errors
    /// I/O errors.
    pub fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        self.last_sync = Instant::now();
        self.dirty = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_valid_slot_counts() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()), Ok(None));
        let mut h = HeadFile::open(dir.path(), Recorded { seq: 0, hash: [0; 32] }).unwrap();
        for seq in 1..=5 {
            h.write(Recorded { seq, hash: [seq as u8; 32] }).unwrap();
        }
        assert_eq!(read(dir.path()), Ok(Some(Recorded { seq: 5, hash: [5; 32] })));
        // A torn write of the newest slot leaves the one before.
        let mut bytes = std::fs::read(path(dir.path())).unwrap();
        bytes[SLOT_OFFSETS[0] as usize + 20] ^= 1;
        std::fs::write(path(dir.path()), &bytes).unwrap();
        assert_eq!(read(dir.path()), Ok(Some(Recorded { seq: 4, hash: [4; 32] })));
        bytes[SLOT_OFFSETS[1] as usize + 9] ^= 1;
        std::fs::write(path(dir.path()), &bytes).unwrap();
        assert!(read(dir.path()).unwrap_err().contains("damaged"));
        std::fs::write(path(dir.path()), b"").unwrap();
        assert_eq!(read(dir.path()), Ok(None), "an empty file is no head file");
    }
}
