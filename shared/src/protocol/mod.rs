//! The wire contract (version 1): the JSON shapes every part of nodb and
//! every client speak. `docs/protocol.md` shows an example of each.
//!
//! - [`action`]: [`Action`], [`CommittedAction`], [`ActionId`], validation.
//! - [`message`]: [`Ack`], socket messages ([`ClientMessage`],
//!   [`ServerMessage`]) and [`ViewState`].
//! - [`error`]: [`ErrorCode`] and the [`ErrorBody`] of every error answer.
//! - [`stream`]: [`StreamLine`], a line of the chronicler's action stream.
//! - [`redact`]: [`Redact`], the payload of `@@nodb/redact`.

pub mod action;
pub mod error;
pub mod message;
pub mod redact;
pub mod stream;

pub use action::{Action, ActionError, ActionId, CommittedAction, Limits, Meta};
pub use error::{ErrorBody, ErrorCode, ErrorDetail};
pub use message::{Ack, Acks, ClientMessage, ServerMessage, Sources, ViewState};
pub use redact::{REDACT, Redact, RedactError};
pub use stream::{StreamLine, StreamLineError};
