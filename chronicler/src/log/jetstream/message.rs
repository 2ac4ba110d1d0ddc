//! One message of the replicated log: a write's records back to back, in
//! the same framing as a segment's (see [`record`]), ending with the
//! write's commit mark (its last seq and the chain hash after it). The
//! stream's first message is the genesis message, so that every write
//! can name the message before it (`Nats-Expected-Last-Sequence` cannot
//! name "none").

use crate::log::record::{self, Decoded, Hash, StoredRecord};

/// The `Nats-Msg-Id` of the genesis message: chroniclers that create the
/// stream at the same moment write it once (JetStream drops the copies).
pub const GENESIS_ID: &str = "nodb-log-genesis";

/// The body of the genesis message: what the stream holds, and its format.
pub const GENESIS_BODY: &[u8] = b"nodb log v1: each later message is one write of framed records and a commit mark\n";

/// The body of a write: `records` (framed by [`record::encode`]) and its
/// commit mark for `last` and `hash`.
pub fn encode_write(records: &[u8], last: u64, hash: &Hash) -> Vec<u8> {
    let mut body = Vec::with_capacity(records.len() + record::COMMIT_LEN);
    body.extend_from_slice(records);
    record::encode_commit(&mut body, last, hash, 0);
    body
}

/// Decodes a write that must follow seq `after`, whose chain hash is
/// `prev`: its records, checked for framing, checksums, consecutive seqs,
/// the chain, and a commit mark that agrees with them and ends the
/// message.
///
/// # Errors
/// What is wrong with the message, as a sentence fragment.
pub fn decode_write(body: &[u8], after: u64, prev: &Hash) -> Result<Vec<StoredRecord>, String> {
    let mut records: Vec<StoredRecord> = Vec::new();
    let mut at = 0;
    loop {
        let expected = after + 1 + records.len() as u64;
        match record::decode(&body[at..]) {
            Decoded::Record(rec, used) => {
                if rec.seq != expected {
                    return Err(format!("holds seq {} where seq {expected} belongs", rec.seq));
                }
                let before = records.last().map_or(prev, |r| &r.hash);
                if !rec.chains_from(before) {
                    return Err(format!("seq {} does not chain from the record before it", rec.seq));
                }
                at += used;
                records.push(rec);
            }
            Decoded::Commit { seq, hash, .. } => {
                let Some(last) = records.last() else { return Err("is a commit mark without records".into()) };
                if seq != last.seq || hash != last.hash {
                    return Err(format!("ends with a commit mark for seq {seq} after seq {}", last.seq));
                }
                if at + record::COMMIT_LEN != body.len() {
                    return Err("has bytes after its commit mark".into());
                }
                return Ok(records);
            }
            Decoded::End | Decoded::Incomplete => return Err("ends before its commit mark".into()),
            Decoded::Invalid(why) => return Err(format!("is damaged at byte {at}: {why}")),
        }
    }
}

/// The records of a write from seq `from` on, checked for framing and
/// checksums but not the chain: for reading a message already checked
/// when it was applied.
///
/// # Errors
/// What is wrong with the message.
pub fn read_write(body: &[u8], from: u64) -> Result<Vec<StoredRecord>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        match record::decode(&body[at..]) {
            Decoded::Record(rec, used) => {
                at += used;
                if rec.seq >= from {
                    out.push(rec);
                }
            }
            Decoded::Commit { .. } => return Ok(out),
            Decoded::End | Decoded::Incomplete => return Err("ends before its commit mark".into()),
            Decoded::Invalid(why) => return Err(format!("is damaged at byte {at}: {why}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::record::GENESIS;

    fn write(after: u64, prev: &Hash, n: u64) -> (Vec<u8>, Hash) {
        let mut buf = Vec::new();
        let mut hash = *prev;
        for seq in after + 1..=after + n {
            hash = record::encode(&mut buf, &hash, seq, &format!("c:{seq}"), format!("{{\"seq\":{seq}}}").as_bytes());
        }
        (encode_write(&buf, after + n, &hash), hash)
    }

    #[test]
    fn a_write_decodes_to_its_records_and_chains_to_the_next() {
        let (first, hash) = write(0, &GENESIS, 3);
        let recs = decode_write(&first, 0, &GENESIS).unwrap();
        assert_eq!(recs.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3]);
        let (second, _) = write(3, &hash, 2);
        assert_eq!(decode_write(&second, 3, &hash).unwrap().len(), 2);
        assert_eq!(read_write(&second, 5).unwrap().iter().map(|r| r.seq).collect::<Vec<_>>(), [5]);
    }

    #[test]
    fn a_write_out_of_place_damaged_or_cut_is_refused() {
        let (body, hash) = write(0, &GENESIS, 3);
        assert!(decode_write(&body, 1, &GENESIS).unwrap_err().contains("where seq 2 belongs"));
        assert!(decode_write(&body, 0, &hash).unwrap_err().contains("does not chain"));
        for cut in [0, 10, body.len() - 1] {
            assert!(decode_write(&body[..cut], 0, &GENESIS).is_err(), "cut at {cut}");
        }
        for i in 0..body.len() {
            let mut flipped = body.clone();
            flipped[i] ^= 0x40;
            assert!(decode_write(&flipped, 0, &GENESIS).is_err(), "flip at byte {i}");
        }
        let mut longer = body.clone();
        longer.push(0);
        assert!(decode_write(&longer, 0, &GENESIS).unwrap_err().contains("after its commit mark"));
        assert!(decode_write(GENESIS_BODY, 0, &GENESIS).is_err());
    }
}
