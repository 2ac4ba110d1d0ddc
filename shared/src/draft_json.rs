//! [`RecordedPatch`]: a draft's recorded edits written as the JSON text of
//! the RFC 6902 patch they make, straight into a buffer.
//!
//! This is the data view's hot path for patch messages (one per seq and
//! view), so the frame of each operation and its JSON Pointer are written
//! by hand, and `serde_json` writes only the values. The bytes are those of
//! `serde_json` serialising [`super::to_patch`]'s result: a property test
//! in `draft_tests.rs` compares the two for random edits.

use crate::diff::diff_at;
use crate::path::Segment;
use crate::tree::Tree;

use super::{Op, is_container};

/// Recorded edits, to be written as the RFC 6902 patch they make — the
/// same bytes as serialising [`super::to_patch`]'s result — without
/// building it: paths are written as pointers straight from their
/// segments, values straight from the tree.
#[derive(Clone, Copy, Debug)]
pub struct RecordedPatch<'a>(pub &'a [Op]);

impl RecordedPatch<'_> {
    /// Appends the patch, a JSON array of operations, to `out`.
    ///
    /// # Errors
    /// If a value cannot be serialised (`serde_json`'s error; a [`Tree`]
    /// always can).
    pub fn write_json(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        out.push(b'[');
        let mut first = true;
        let mut next = |out: &mut Vec<u8>| {
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
        };
        for op in self.0 {
            match op {
                Op::Add { path, value } => {
                    next(out);
                    operation(out, "add", path, Some(value))?;
                }
                Op::Replace { path, value, old } if is_container(old) && is_container(value) => {
                    for d in diff_at(old, value, path) {
                        next(out);
                        serde_json::to_writer(&mut *out, &d)?;
                    }
                }
                Op::Replace { path, value, .. } => {
                    next(out);
                    operation(out, "replace", path, Some(value))?;
                }
                Op::Remove { path, .. } => {
                    next(out);
                    operation(out, "remove", path, None)?;
                }
            }
        }
        out.push(b']');
        Ok(())
    }
}

/// `{"op":OP,"path":POINTER[,"value":VALUE]}`.
fn operation(out: &mut Vec<u8>, op: &str, path: &[Segment], value: Option<&Tree>) -> Result<(), serde_json::Error> {
    out.extend_from_slice(b"{\"op\":\"");
    out.extend_from_slice(op.as_bytes());
    out.extend_from_slice(b"\",\"path\":\"");
    for segment in path {
        out.push(b'/');
        match segment {
            Segment::Index(i) => out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes()),
            Segment::Key(k) if k.bytes().all(plain) => out.extend_from_slice(k.as_bytes()),
            // Rare: the token's `~` and `/` escaped, then the JSON string's
            // own escapes, as `serde_json` writes them.
            segment => {
                let quoted = serde_json::to_vec(&segment.to_string())?;
                out.extend_from_slice(&quoted[1..quoted.len() - 1]);
            }
        }
    }
    out.push(b'"');
    if let Some(value) = value {
        out.extend_from_slice(b",\"value\":");
        serde_json::to_writer(&mut *out, value)?;
    }
    out.push(b'}');
    Ok(())
}

/// Whether a byte of a key stands for itself in a JSON Pointer written in
/// a JSON string: not `~` or `/` (the pointer escapes them), not `"`, `\`
/// or a control character (JSON escapes them).
fn plain(b: u8) -> bool {
    b >= 0x20 && !matches!(b, b'~' | b'/' | b'"' | b'\\')
}
