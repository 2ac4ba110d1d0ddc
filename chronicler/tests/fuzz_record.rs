//! Fuzzing the log's record decoder with proptest: arbitrary bytes are
//! decoded or refused, never a panic; a record with any one byte changed
//! is never read back as a valid record.

use nodb_chronicler::log::record::{Decoded, decode, encode};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5000))]

    /// Any bytes at all: a record, the end, incomplete, or invalid, and a
    /// record never claims more bytes than there are.
    #[test]
    fn any_bytes_are_decoded_or_refused(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Decoded::Record(_, used) = decode(&bytes) {
            prop_assert!(used <= bytes.len());
        }
    }

    /// One byte changed anywhere in a record: refused (checksum, length),
    /// never read as a valid record — the CRC32C of the body catches every
    /// one-byte change, and a changed frame fails its own checks.
    #[test]
    fn a_changed_byte_is_caught(
        seq in 1u64..u64::MAX,
        id in "[a-z]{1,8}:[1-9][0-9]{0,5}",
        json in "\\{\"[a-z]{1,6}\":[0-9]{1,6}\\}",
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut out = Vec::new();
        encode(&mut out, &[0; 32], seq, &id, json.as_bytes());
        let i = at.index(out.len());
        prop_assume!(out[i] != byte);
        out[i] = byte;
        if let Decoded::Record(r, _) = decode(&out) {
            prop_assert!(false, "a changed byte at {} decoded as seq {} id {:?}", i, r.seq, r.id);
        }
    }
}
