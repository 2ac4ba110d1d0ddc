//! A damaged history is refused, not papered over: flip one byte in a
//! sealed segment and the chronicler will not start, naming the segment,
//! offset and seq, and `nodb log verify` names the same record.

use nodb_tests::{Service, post, run};
use serde_json::json;

#[test]
fn a_flipped_byte_in_a_sealed_segment_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let args = ["chronicler", "--data", data, "--listen", "127.0.0.1:0", "--segment-size", "4096"];
    let mut s = Service::start(&args).unwrap();
    for n in 1..=60 {
        let body = json!({"id": format!("c:{n}"), "type": "t", "payload": "x".repeat(100)}).to_string();
        assert_eq!(post(&format!("{}/actions", s.url()), "application/json", body.as_bytes()).unwrap().status, 200);
    }
    assert_eq!(s.terminate(10_000), Some(0));
    let out = run(dir.path(), &["log", "verify", "--data", data], "");
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("head seq: 60"), "{out:?}");

    // The second segment is sealed (the log rolled past it). Flip a byte in
    // the middle of its third record.
    let log_dir = dir.path().join("log");
    let mut segs: Vec<_> = std::fs::read_dir(&log_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    assert!(segs.len() >= 3, "the log rolled: {segs:?}");
    let victim = &segs[1];
    let first_seq: u64 = victim.file_stem().unwrap().to_str().unwrap().parse().unwrap();
    let mut bytes = std::fs::read(victim).unwrap();
    // Records here are equal in size: header 56, then fixed-size records.
    let record_len = (bytes.len() - 56) / {
        let next: u64 = segs[2].file_stem().unwrap().to_str().unwrap().parse().unwrap();
        (next - first_seq) as usize
    };
    let offset = 56 + 2 * record_len;
    bytes[offset + record_len / 2] ^= 0x20;
    let mut perms = std::fs::metadata(victim).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(victim, perms).unwrap();
    std::fs::write(victim, &bytes).unwrap();

    let name = victim.file_name().unwrap().to_str().unwrap();
    let seq = first_seq + 2;
    let err = Service::start(&args).err().expect("the chronicler must refuse a damaged log");
    for needle in [name, &format!("offset {offset}"), &format!("seq {seq}"), "nodb log verify"] {
        assert!(err.contains(needle), "start-up error names {needle:?}:\n{err}");
    }
    let out = run(dir.path(), &["log", "verify", "--data", data], "");
    assert_eq!(out.code, Some(2), "{out:?}");
    for needle in [name, &format!("offset {offset}"), &format!("seq {seq}"), "checksum"] {
        assert!(out.stderr.contains(needle), "verify names {needle:?}: {out:?}");
    }
    // The damaged data is left exactly as it was found for the operator.
    assert_eq!(std::fs::read(victim).unwrap(), bytes);
}
