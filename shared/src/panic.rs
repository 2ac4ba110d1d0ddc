//! Caught panics: their text, and letting go of their payloads. A
//! reducer, cascade or envoy handler may panic with any value
//! (`std::panic::panic_any`), and that value's drop may panic again, out
//! of the place that caught the first; [`let_go`] keeps that in.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// The text of a caught panic's payload: its message, or "unknown panic".
pub fn text(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Drops a caught panic's payload: a message at once, any other value
/// under `catch_unwind`, forgetting the payload of a panic in its drop (a
/// leak, for code that does that).
pub fn let_go(panic: Box<dyn Any + Send>) {
    if panic.is::<&'static str>() || panic.is::<String>() {
        return drop(panic);
    }
    if let Err(again) = catch_unwind(AssertUnwindSafe(|| drop(panic))) {
        std::mem::forget(again);
    }
}

/// The text of a caught panic, its payload let go of ([`let_go`]).
pub fn message(panic: Box<dyn Any + Send>) -> String {
    let text = text(&*panic);
    let_go(panic);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Bomb;
    impl Drop for Bomb {
        fn drop(&mut self) {
            panic!("the payload's drop panics");
        }
    }

    #[test]
    fn a_payload_whose_drop_panics_is_let_go_of_without_a_panic() {
        let caught = catch_unwind(|| std::panic::panic_any(Bomb)).unwrap_err();
        assert_eq!(message(caught), "unknown panic");
        let caught = catch_unwind(|| panic!("plain {}", 1)).unwrap_err();
        assert_eq!(message(caught), "plain 1");
    }
}
