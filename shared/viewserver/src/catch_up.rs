//! What a client is sent to catch up, and where a session asks for it.

use bytes::Bytes;
use tokio::sync::watch;

/// What a client that has some seq should be sent now.
#[derive(Debug)]
pub enum CatchUp {
    /// Nothing new (or no state yet).
    Nothing,
    /// The single patch message of the next seq.
    Patch(Bytes),
    /// One combined patch message covering several seqs (`from..=seq`).
    Combined(Bytes),
    /// A snapshot message: the client is new, or further behind than the
    /// history kept.
    Snapshot(Bytes),
}

impl CatchUp {
    /// The message to send, if any.
    pub fn into_message(self) -> Option<Bytes> {
        match self {
            CatchUp::Nothing => None,
            CatchUp::Patch(b) | CatchUp::Combined(b) | CatchUp::Snapshot(b) => Some(b),
        }
    }
}

/// One view as a session sees it.
pub trait Feed: Send + Sync {
    /// The view's seq, watchable: a session wakes when it changes.
    fn seq(&self) -> watch::Receiver<u64>;

    /// What a client that has seq `since` (`None`: nothing yet) is sent
    /// now, and the seq it then has (`None` while the view has no state).
    fn catch_up(&self, since: Option<u64>) -> (CatchUp, Option<u64>);
}
