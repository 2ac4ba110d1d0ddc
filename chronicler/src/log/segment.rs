//! Segment files: a header, then records, preallocated and sealed.
//!
//! ```text
//! header = magic "NODBLOG\0" | version: u32 LE | first_seq: u64 LE
//!        | prev_hash: [u8; 32] | crc: u32 LE (CRC32C of the 52 bytes before)
//! ```
//!
//! A segment is named after its first seq (`00000000000000000001.seg`), so
//! listing the directory gives the segments in order. The active segment is
//! preallocated (`fallocate`) to the roll size, so appends do not grow the
//! file and the zeros after the last record mark the end. A segment is
//! rolled once full: truncated to its data, synced, and made read-only
//! (sealed). New segments are written under a temporary name and renamed,
//! so a segment file always has a whole header.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::record::Hash;

/// The magic bytes at the start of every segment.
pub const MAGIC: &[u8; 8] = b"NODBLOG\0";
/// The format version this code writes: 2 ends every write with a commit
/// mark (see [`record`](super::record)). Version 1 segments, without marks,
/// are still read; a chronicler never appends to one.
pub const VERSION: u32 = 2;
/// The oldest format version this code reads.
pub const OLDEST_VERSION: u32 = 1;
/// The size of the segment header.
pub const HEADER_LEN: u64 = 56;
/// The file name extension of segments.
pub const EXT: &str = "seg";

/// A segment's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The format version.
    pub version: u32,
    /// The seq of the first record in the segment.
    pub first_seq: u64,
    /// The chain hash of the record before it.
    pub prev_hash: Hash,
}

impl Header {
    /// The header of a new segment in the current format.
    pub fn new(first_seq: u64, prev_hash: Hash) -> Header {
        Header { version: VERSION, first_seq, prev_hash }
    }

    /// Whether every write in the segment ends with a commit mark.
    pub fn has_commit_marks(&self) -> bool {
        self.version >= 2
    }

    /// The header's bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN as usize] {
        let mut b = [0u8; HEADER_LEN as usize];
        b[0..8].copy_from_slice(MAGIC);
        b[8..12].copy_from_slice(&self.version.to_le_bytes());
        b[12..20].copy_from_slice(&self.first_seq.to_le_bytes());
        b[20..52].copy_from_slice(&self.prev_hash);
        let crc = crc32c::crc32c(&b[0..52]);
        b[52..56].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Parses a header.
    ///
    /// # Errors
    /// A sentence saying what is wrong with it.
    pub fn decode(b: &[u8]) -> Result<Header, &'static str> {
        if b.len() < HEADER_LEN as usize {
            return Err("file shorter than a segment header");
        }
        if &b[0..8] != MAGIC {
            return Err("not a nodb log segment (bad magic)");
        }
        if crc32c::crc32c(&b[0..52]).to_le_bytes() != b[52..56] {
            return Err("segment header checksum mismatch");
        }
        let version = u32::from_le_bytes(b[8..12].try_into().unwrap_or_default());
        if !(OLDEST_VERSION..=VERSION).contains(&version) {
            return Err("unsupported segment format version (written by a newer nodb?)");
        }
        let first_seq = u64::from_le_bytes(b[12..20].try_into().unwrap_or_default());
        let mut prev_hash = [0; 32];
        prev_hash.copy_from_slice(&b[20..52]);
        Ok(Header { version, first_seq, prev_hash })
    }
}

/// The path of the segment starting at `first_seq`.
pub fn path_for(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.{EXT}"))
}

/// The segments in `dir`, in order of first seq: `(first_seq, path)`.
/// Temporary files of a roll in progress (or interrupted) are passed over.
///
/// # Errors
/// I/O errors listing the directory.
pub fn list(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some(Ok(seq)) = name.strip_suffix(&format!(".{EXT}")).map(str::parse::<u64>) {
            out.push((seq, path));
        }
    }
    out.sort();
    Ok(out)
}

/// Removes the temporary files an interrupted roll left in `dir`. Only
/// for the log's owner (holding its lock): a roll in progress writes one.
///
/// # Errors
/// I/O errors.
pub fn remove_leftovers(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "tmp") {
            fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// Reads the header of the segment at `path`.
///
/// # Errors
/// I/O errors, or `InvalidData` naming what is wrong with the header.
pub fn read_header(path: &Path) -> io::Result<Header> {
    let mut b = [0u8; HEADER_LEN as usize];
    let mut f = File::open(path)?;
    let n = read_up_to(&mut f, &mut b)?;
    Header::decode(&b[..n]).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

fn read_up_to(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Creates a new segment atomically (temporary file, sync, rename, sync
/// the directory) and returns it open for writing, preallocated to
/// `prealloc` bytes when the filesystem supports it.
///
/// # Errors
/// I/O errors, including `StorageFull` when there is no room.
pub fn create(dir: &Path, header: Header, prealloc: u64) -> io::Result<File> {
    let path = path_for(dir, header.first_seq);
    let tmp = path.with_extension(format!("{EXT}.tmp"));
    let made = (|| {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&tmp)?;
        file.write_all_at(&header.encode(), 0)?;
        preallocate(&file, prealloc)?;
        file.sync_all()?;
        fs::rename(&tmp, &path)?;
        sync_dir(dir)?;
        Ok(file)
    })();
    if made.is_err() {
        // Neither a half-made file holding space on a full disk, nor an
        // empty segment the log never moved on to (which would read as a
        // gap) may stay behind.
        let _ = fs::remove_file(&tmp);
        let _ = fs::remove_file(&path);
        let _ = sync_dir(dir);
    }
    made
}

/// Reserves `len` bytes for the file, so that later writes inside it do not
/// change the file's size. Filesystems without `fallocate` fall back to a
/// sparse `set_len`: correct, just a little slower to sync.
fn preallocate(file: &File, len: u64) -> io::Result<()> {
    if len <= HEADER_LEN {
        return Ok(());
    }
    match rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, len) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::NOSPC => Err(io::Error::from(io::ErrorKind::StorageFull)),
        Err(_) => file.set_len(len),
    }
}

/// Opens an existing segment for appending.
///
/// # Errors
/// I/O errors.
pub fn open_for_append(path: &Path) -> io::Result<File> {
    let mut perms = fs::metadata(path)?.permissions();
    if perms.readonly() {
        perms.set_mode(0o644);
        fs::set_permissions(path, perms)?;
    }
    OpenOptions::new().read(true).write(true).open(path)
}

/// Seals a full segment: cuts it to its data (`len` bytes), syncs it and
/// makes it read-only. Idempotent, so recovery can finish an interrupted
/// seal.
///
/// # Errors
/// I/O errors.
pub fn seal(path: &Path, len: u64) -> io::Result<()> {
    let file = OpenOptions::new().write(true).open(path).or_else(|_| {
        // Already read-only: a previous seal got that far.
        let mut perms = fs::metadata(path)?.permissions();
        perms.set_mode(0o644);
        fs::set_permissions(path, perms)?;
        OpenOptions::new().write(true).open(path)
    })?;
    if file.metadata()?.len() != len {
        file.set_len(len)?;
    }
    file.sync_all()?;
    let mut perms = fs::metadata(path)?.permissions();
    perms.set_mode(0o444);
    fs::set_permissions(path, perms)
}

/// Makes a directory's entries (created, renamed files) durable.
///
/// # Errors
/// I/O errors.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_damage() {
        let h = Header::new(42, [7; 32]);
        let b = h.encode();
        assert_eq!(Header::decode(&b), Ok(h));
        for i in 0..b.len() {
            let mut d = b;
            d[i] ^= 1;
            assert!(Header::decode(&d).is_err(), "flip at {i}");
        }
        assert!(Header::decode(&b[..10]).is_err());
    }

    #[test]
    fn create_list_seal() {
        let dir = tempfile::tempdir().unwrap();
        let h = Header::new(1, [0; 32]);
        let f = create(dir.path(), h, 1 << 20).unwrap();
        assert_eq!(f.metadata().unwrap().len(), 1 << 20);
        let junk = dir.path().join("00000000000000000009.seg.tmp");
        std::fs::write(&junk, b"junk").unwrap();
        let segs = list(dir.path()).unwrap();
        assert_eq!(segs, vec![(1, path_for(dir.path(), 1))]);
        assert!(junk.exists(), "listing leaves a roll in progress alone");
        remove_leftovers(dir.path()).unwrap();
        assert!(!junk.exists());
        assert_eq!(read_header(&segs[0].1).unwrap(), h);
        seal(&segs[0].1, HEADER_LEN).unwrap();
        seal(&segs[0].1, HEADER_LEN).unwrap();
        let meta = std::fs::metadata(&segs[0].1).unwrap();
        assert_eq!(meta.len(), HEADER_LEN);
        assert!(meta.permissions().readonly());
        open_for_append(&segs[0].1).unwrap();
    }
}
