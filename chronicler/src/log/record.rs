//! The on-disk record: framing, checksum and hash chain.
//!
//! ```text
//! frame  = len: u32 LE | crc: u32 LE | body[len]
//! body   = seq: u64 LE | hash: [u8; 32] | id_len: u16 LE | id[id_len] | json
//! hash   = BLAKE3(previous record's hash | seq | id_len | id | json)
//! commit = COMMIT_TAG: u32 LE | crc: u32 LE | seq: u64 LE | hash: [u8; 32] | start: u64 LE
//! ```
//!
//! `crc` is CRC32C of `body` (of `seq | hash | start` for a commit mark).
//! Every write of the log ends with a commit mark naming the last seq of
//! the write, the chain hash after it, and the offset in the segment where
//! the write began, so recovery knows exactly where each completed write
//! ended: records after the last mark belong to a write that never finished
//! (and was never acknowledged). The mark's tag is a
//! length no record can have, whose first byte (`0xFE`) never occurs in
//! UTF-8 text, so a search for marks past damaged bytes finds few false
//! candidates, and those fail the checksum. `json` is the committed action exactly as it
//! is streamed to consumers, so serving the log needs no re-encoding; `id`
//! is stored beside it so the exactly-once table can be rebuilt without
//! parsing JSON. The hash chain makes the history tamper-evident: changing
//! any record changes every hash after it.

use bytes::Bytes;

/// Bytes before the body: length and CRC.
pub const FRAME_HEADER: usize = 8;
/// Fixed part of the body: seq, hash, id length.
const BODY_FIXED: usize = 8 + 32 + 2;
/// The largest body accepted when reading; anything larger is damage.
pub const MAX_BODY: usize = 64 * 1024 * 1024;

/// The tag in a commit mark's length field: larger than any record.
pub const COMMIT_TAG: u32 = 0x54_4D_C0_FE;
/// The bytes of a commit mark.
pub const COMMIT_LEN: usize = FRAME_HEADER + 8 + 32 + 8;

/// A chain hash.
pub type Hash = [u8; 32];

/// The hash before the first record of a log.
pub const GENESIS: Hash = [0; 32];

/// One committed action as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    /// Its sequence number.
    pub seq: u64,
    /// The chain hash up to and including this record.
    pub hash: Hash,
    /// The action id `<client>:<n>`.
    pub id: String,
    /// The committed action as JSON.
    pub json: Bytes,
}

/// The chain hash of a record whose predecessor's hash is `prev`.
pub fn chain_hash(prev: &Hash, seq: u64, id: &str, json: &[u8]) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(prev);
    h.update(&seq.to_le_bytes());
    h.update(&(id.len() as u16).to_le_bytes());
    h.update(id.as_bytes());
    h.update(json);
    *h.finalize().as_bytes()
}

/// Appends the framed record to `out`, returning its chain hash.
///
/// `id` must be at most 65,535 bytes (action ids are far shorter).
pub fn encode(out: &mut Vec<u8>, prev: &Hash, seq: u64, id: &str, json: &[u8]) -> Hash {
    let hash = chain_hash(prev, seq, id, json);
    let body_len = BODY_FIXED + id.len() + json.len();
    out.reserve(FRAME_HEADER + body_len);
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    let crc_at = out.len();
    out.extend_from_slice(&[0; 4]);
    let body_at = out.len();
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&hash);
    out.extend_from_slice(&(id.len() as u16).to_le_bytes());
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(json);
    let crc = crc32c::crc32c(&out[body_at..]);
    out[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
    hash
}

/// Appends a commit mark: the write that holds it began at offset `start`
/// of its segment and ends after `seq`, with the chain hash `hash`.
pub fn encode_commit(out: &mut Vec<u8>, seq: u64, hash: &Hash, start: u64) {
    out.extend_from_slice(&COMMIT_TAG.to_le_bytes());
    let crc_at = out.len();
    out.extend_from_slice(&[0; 4]);
    let body_at = out.len();
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(hash);
    out.extend_from_slice(&start.to_le_bytes());
    let crc = crc32c::crc32c(&out[body_at..]);
    out[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
}

/// What [`decode`] found at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A whole record, and the bytes it took.
    Record(StoredRecord, usize),
    /// A commit mark: the write it ends began at offset `start` and holds
    /// records through `seq`, and the chain hash after them is `hash`. It
    /// takes [`COMMIT_LEN`] bytes.
    Commit {
        /// The last seq of the write.
        seq: u64,
        /// The chain hash after it.
        hash: Hash,
        /// Where the write began in its segment.
        start: u64,
    },
    /// A zero length: the clean end of the written part of a segment
    /// (segments are preallocated with zeros).
    End,
    /// The buffer ends inside the record.
    Incomplete,
    /// Not a valid record.
    Invalid(&'static str),
}

/// Decodes the record at the start of `buf`. Checks the frame and CRC, not
/// the chain (the caller knows the previous hash); never panics.
pub fn decode(buf: &[u8]) -> Decoded {
    if buf.len() < FRAME_HEADER {
        if buf.iter().all(|&b| b == 0) {
            return Decoded::End;
        }
        return Decoded::Incomplete;
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if len == 0 {
        return if crc == 0 { Decoded::End } else { Decoded::Invalid("zero length with a checksum") };
    }
    if len == COMMIT_TAG as usize {
        let Some(body) = buf.get(FRAME_HEADER..COMMIT_LEN) else {
            return Decoded::Incomplete;
        };
        if crc32c::crc32c(body) != crc {
            return Decoded::Invalid("commit mark checksum mismatch");
        }
        let seq = u64::from_le_bytes(body[0..8].try_into().unwrap_or_default());
        let mut hash = [0; 32];
        hash.copy_from_slice(&body[8..40]);
        let start = u64::from_le_bytes(body[40..48].try_into().unwrap_or_default());
        return Decoded::Commit { seq, hash, start };
    }
    if !(BODY_FIXED..=MAX_BODY).contains(&len) {
        return Decoded::Invalid("impossible record length");
    }
    let Some(body) = buf.get(FRAME_HEADER..FRAME_HEADER + len) else {
        return Decoded::Incomplete;
    };
    if crc32c::crc32c(body) != crc {
        return Decoded::Invalid("checksum mismatch");
    }
    let seq = u64::from_le_bytes(body[0..8].try_into().unwrap_or_default());
    let mut hash = [0; 32];
    hash.copy_from_slice(&body[8..40]);
    let id_len = u16::from_le_bytes([body[40], body[41]]) as usize;
    let Some(id) = body.get(BODY_FIXED..BODY_FIXED + id_len) else {
        return Decoded::Invalid("id longer than the record");
    };
    let Ok(id) = std::str::from_utf8(id) else {
        return Decoded::Invalid("id is not UTF-8");
    };
    let json = Bytes::copy_from_slice(&body[BODY_FIXED + id_len..]);
    Decoded::Record(StoredRecord { seq, hash, id: id.to_string(), json }, FRAME_HEADER + len)
}

impl StoredRecord {
    /// Whether this record's hash is right for a predecessor hash `prev`.
    pub fn chains_from(&self, prev: &Hash) -> bool {
        chain_hash(prev, self.seq, &self.id, &self.json) == self.hash
    }
}

/// A valid commit mark found by [`find_commit_after`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FoundMark {
    /// Its offset.
    pub at: usize,
    /// The last seq of its write.
    pub seq: u64,
    /// Where its write began.
    pub start: u64,
}

/// The first valid commit mark in `buf` at or after byte `from` whose seq
/// is above `above`. Recovery uses it to tell a torn last write from
/// damaged history (a later write completed, so what precedes it was
/// acknowledged).
pub fn find_commit_after(buf: &[u8], from: usize, above: u64) -> Option<FoundMark> {
    let tag = COMMIT_TAG.to_le_bytes();
    // Nothing to find in the zeros after the last data.
    let end = buf.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1).min(buf.len());
    let mut at = from;
    while at + COMMIT_LEN <= buf.len() && at < end {
        let Some(i) = buf[at..end].windows(4).position(|w| w == tag) else { break };
        at += i;
        if let Decoded::Commit { seq, start, .. } = decode(&buf[at..])
            && seq > above
        {
            return Some(FoundMark { at, seq, start });
        }
        at += 1;
    }
    None
}

/// A hash as lowercase hex.
pub fn hex(hash: &Hash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn one(prev: &Hash, seq: u64, id: &str, json: &[u8]) -> (Vec<u8>, Hash) {
        let mut buf = Vec::new();
        let h = encode(&mut buf, prev, seq, id, json);
        (buf, h)
    }

    #[test]
    fn zeros_are_the_end() {
        assert_eq!(decode(&[]), Decoded::End);
        assert_eq!(decode(&[0; 3]), Decoded::End);
        assert_eq!(decode(&[0; 100]), Decoded::End);
        assert_eq!(decode(&[1, 0, 0]), Decoded::Incomplete);
    }

    #[test]
    fn a_flipped_bit_is_caught() {
        let (buf, _) = one(&GENESIS, 1, "c:1", br#"{"seq":1}"#);
        for i in 0..buf.len() {
            let mut b = buf.clone();
            b[i] ^= 0x10;
            assert!(!matches!(decode(&b), Decoded::Record(..)), "flip at {i} went unnoticed");
        }
    }

    #[test]
    fn commit_marks_round_trip_and_are_found_past_damage() {
        let mut buf = Vec::new();
        let h = encode(&mut buf, &GENESIS, 1, "c:1", b"{}");
        let mark_at = buf.len();
        encode_commit(&mut buf, 1, &h, 56);
        assert_eq!(buf.len() - mark_at, COMMIT_LEN);
        assert_eq!(decode(&buf[mark_at..]), Decoded::Commit { seq: 1, hash: h, start: 56 });
        for cut in mark_at + 1..buf.len() {
            assert_eq!(decode(&buf[mark_at..cut]), Decoded::Incomplete, "cut at {cut}");
        }
        for i in mark_at..buf.len() {
            let mut b = buf.clone();
            b[i] ^= 0x08;
            assert!(!matches!(decode(&b[mark_at..]), Decoded::Commit { .. }), "flip at {i}");
        }
        let mut damaged = buf.clone();
        damaged[10] ^= 1;
        assert_eq!(find_commit_after(&damaged, 0, 0), Some(FoundMark { at: mark_at, seq: 1, start: 56 }));
        assert_eq!(find_commit_after(&damaged, 0, 1), None, "only marks past the kept head count");
        assert_eq!(find_commit_after(&damaged, mark_at + 1, 0), None);
    }

    proptest! {
        #[test]
        fn round_trip(seq in any::<u64>(), id in ".{0,40}", json in proptest::collection::vec(any::<u8>(), 0..300), prev in any::<[u8; 32]>()) {
            let (buf, h) = one(&prev, seq, &id, &json);
            match decode(&buf) {
                Decoded::Record(r, used) => {
                    prop_assert_eq!(used, buf.len());
                    prop_assert_eq!(r.seq, seq);
                    prop_assert_eq!(&r.id, &id);
                    prop_assert_eq!(&r.json[..], &json[..]);
                    prop_assert_eq!(r.hash, h);
                    prop_assert!(r.chains_from(&prev));
                    prop_assert!(!r.chains_from(&GENESIS) || prev == GENESIS);
                }
                other => prop_assert!(false, "decoded {:?}", other),
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn every_cut_is_incomplete(json in proptest::collection::vec(any::<u8>(), 0..100)) {
            let (buf, _) = one(&GENESIS, 9, "client:9", &json);
            for cut in 1..buf.len() {
                prop_assert!(!matches!(decode(&buf[..cut]), Decoded::Record(..)));
            }
        }
    }
}
