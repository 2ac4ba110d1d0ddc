//! The on-disk record: framing, checksum and hash chain.
//!
//! ```text
//! frame = len: u32 LE | crc: u32 LE | body[len]
//! body  = seq: u64 LE | hash: [u8; 32] | id_len: u16 LE | id[id_len] | json
//! hash  = BLAKE3(previous record's hash | seq | id_len | id | json)
//! ```
//!
//! `crc` is CRC32C of `body`. `json` is the committed action exactly as it
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

/// What [`decode`] found at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A whole record, and the bytes it took.
    Record(StoredRecord, usize),
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
