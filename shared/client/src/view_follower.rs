//! [`ViewFollower`]: a [`Replica`] kept up to date over a view's stream,
//! through dropped connections, service restarts and bad data.
//!
//! On a dropped connection it reconnects with back-off and `since` = the
//! replica's seq, so the server sends only what was missed (or a snapshot
//! if it cannot). A message it cannot read, a patch that does not start
//! right after the replica's seq or does not apply means the replica can
//! no longer be trusted: it resyncs from a snapshot (reconnects without
//! `since`), keeping the last good state until then. A data view that has
//! restarted refuses a `since` it has not replayed to yet; a snapshot then
//! could be older than the replica, so the follower waits for it, and
//! takes a fresh snapshot only when it still refuses after the resume
//! grace. A connection silent for longer than the idle timeout (data views
//! ping every 15 s) is dropped and reopened.

use std::time::Duration;

use nodb_shared::protocol::{ErrorCode, ServerMessage};
use tokio::time::Instant;

use crate::error::{Error, Refusal};
use crate::replica::{Replica, Update};
use crate::view_client::{StreamOptions, ViewClient, ViewStream};

/// How a [`ViewFollower`] follows.
#[derive(Clone, Debug)]
pub struct FollowSettings {
    /// How long the stream may stay silent before it is reopened.
    pub idle_timeout: Duration,
    /// How long the server may refuse to resume from the replica's seq
    /// before the replica takes a fresh snapshot.
    pub resume_grace: Duration,
    /// The first wait before reconnecting; it doubles up to `max_backoff`
    /// and starts over once a connection has brought a message.
    pub min_backoff: Duration,
    /// The longest wait before reconnecting.
    pub max_backoff: Duration,
    /// Follow the exact stream (one message per seq).
    pub exact: bool,
    /// The client id whose rejections to be told of.
    pub client: Option<String>,
}

impl Default for FollowSettings {
    fn default() -> Self {
        FollowSettings {
            idle_timeout: Duration::from_secs(60),
            resume_grace: Duration::from_secs(10),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            exact: false,
            client: None,
        }
    }
}

/// What happened next, from [`ViewFollower::next`].
#[derive(Debug)]
pub enum FollowEvent {
    /// The stream is open.
    Connected {
        /// Its URL.
        url: String,
        /// The `since` it was opened with.
        since: Option<u64>,
    },
    /// The replica moved on.
    Update(Update),
    /// A reducer rejected one of [`FollowSettings::client`]'s actions.
    Rejected {
        /// Its seq.
        seq: u64,
        /// Its id.
        id: String,
        /// Why.
        reason: String,
    },
    /// The server sent an error message (the stream stays open).
    ServerError {
        /// The code.
        code: ErrorCode,
        /// The message.
        message: String,
    },
    /// The stream ended or could not be opened; the follower resumes with
    /// `since` after `retry_in`.
    Disconnected {
        /// Why.
        error: Error,
        /// The wait before the next attempt.
        retry_in: Duration,
    },
    /// The server sent what the replica cannot take: the follower resyncs
    /// from a snapshot after `retry_in`.
    Resync {
        /// What was wrong.
        reason: String,
        /// The wait before reconnecting.
        retry_in: Duration,
    },
    /// The server refused to resume from the replica's seq (it has not
    /// reached it). With `retry_in`, the follower waits for it; without,
    /// the grace is over and it takes a fresh snapshot now.
    ResumeRefused {
        /// The refusal.
        refusal: Refusal,
        /// How long it has refused.
        waited: Duration,
        /// The wait before asking again; `None`: a snapshot next.
        retry_in: Option<Duration>,
    },
}

/// A replica that follows a view (see the module docs). Drive it with
/// [`ViewFollower::next`], which is cancel-safe.
#[derive(Debug)]
pub struct ViewFollower {
    view: ViewClient,
    settings: FollowSettings,
    replica: Replica,
    socket: Option<ViewStream>,
    /// Whether the next connection resumes with `since`.
    resume: bool,
    /// Since when the server has refused to resume.
    refused_since: Option<Instant>,
    backoff: Duration,
    retry_at: Option<Instant>,
    /// Messages applied on the current connection.
    got: u64,
}

impl ViewFollower {
    /// Follows `view` from a snapshot.
    pub fn new(view: ViewClient, settings: FollowSettings) -> ViewFollower {
        let replica = if settings.exact { Replica::new().exact() } else { Replica::new() };
        ViewFollower::from_replica(view, settings, replica)
    }

    /// Follows `view` from `replica`'s seq (resuming with `since`).
    pub fn from_replica(view: ViewClient, settings: FollowSettings, replica: Replica) -> ViewFollower {
        ViewFollower {
            view,
            backoff: settings.min_backoff,
            settings,
            replica,
            socket: None,
            resume: true,
            refused_since: None,
            retry_at: None,
            got: 0,
        }
    }

    /// The replica.
    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// The view followed.
    pub fn view(&self) -> &ViewClient {
        &self.view
    }

    /// Whether the stream is open.
    pub fn is_connected(&self) -> bool {
        self.socket.is_some()
    }

    /// The next event: connecting (after a back-off), a message applied,
    /// or a problem and what the follower does about it.
    pub async fn next(&mut self) -> FollowEvent {
        loop {
            if let Some(at) = self.retry_at {
                tokio::time::sleep_until(at).await;
                self.retry_at = None;
            }
            let Some(socket) = &mut self.socket else {
                if let Some(event) = self.connect().await {
                    return event;
                }
                continue;
            };
            let idle = self.settings.idle_timeout;
            let next = loop {
                // Pings count as heard: wait again from the last frame.
                match tokio::time::timeout_at(socket.heard_at() + idle, socket.next_message()).await {
                    Err(_) if socket.heard_at() + idle > Instant::now() => continue,
                    Err(_) => break None,
                    Ok(next) => break Some(next),
                }
            };
            let message = match next {
                None => {
                    let url = socket.url().to_string();
                    return self.dropped(Error::Ended { url, why: format!("nothing heard for {idle:?}") });
                }
                Some(Err(Error::Protocol { reason, .. })) => return self.resync(reason).await,
                Some(Err(e)) => return self.dropped(e),
                Some(Ok(message)) => message,
            };
            match message {
                ServerMessage::Rejected { seq, id, reason } => return FollowEvent::Rejected { seq, id, reason },
                ServerMessage::Error { code, message, .. } => return FollowEvent::ServerError { code, message },
                message => match self.replica.apply(message) {
                    Ok(Some(update)) => {
                        self.got += 1;
                        return FollowEvent::Update(update);
                    }
                    Ok(None) => {}
                    Err(e) => return self.resync(e.to_string()).await,
                },
            }
        }
    }

    /// Closes the stream (on shutdown), waiting at most a second.
    pub async fn close(&mut self) {
        if let Some(mut socket) = self.socket.take() {
            socket.close().await;
        }
    }

    /// Opens the stream: the event to report, or `None` to go on at once.
    async fn connect(&mut self) -> Option<FollowEvent> {
        let since = if self.resume { self.replica.seq() } else { None };
        let version = since.and(self.replica.version().map(str::to_string));
        let options =
            StreamOptions { since, exact: self.settings.exact, client: self.settings.client.clone(), version };
        match self.view.open(&options).await {
            Ok(socket) => {
                if since.is_none() {
                    self.replica.expect_snapshot();
                }
                let url = socket.url().to_string();
                self.socket = Some(socket);
                self.got = 0;
                Some(FollowEvent::Connected { url, since })
            }
            Err(e) => match e.refusal().filter(|_| since.is_some()).cloned() {
                Some(refusal) => {
                    let first = *self.refused_since.get_or_insert_with(Instant::now);
                    let waited = first.elapsed();
                    if waited >= self.settings.resume_grace {
                        self.refused_since = None;
                        self.resume = false;
                        return Some(FollowEvent::ResumeRefused { refusal, waited, retry_in: None });
                    }
                    let retry_in = self.wait(false);
                    Some(FollowEvent::ResumeRefused { refusal, waited, retry_in: Some(retry_in) })
                }
                None => {
                    let retry_in = self.wait(false);
                    Some(FollowEvent::Disconnected { error: e, retry_in })
                }
            },
        }
    }

    /// The connection ended: resume with `since`.
    fn dropped(&mut self, error: Error) -> FollowEvent {
        self.socket = None;
        self.resume = true;
        let retry_in = self.wait(true);
        FollowEvent::Disconnected { error, retry_in }
    }

    /// Bad data: close, and reconnect without `since`.
    async fn resync(&mut self, reason: String) -> FollowEvent {
        self.resume = false;
        let retry_in = self.wait(true);
        if let Some(mut socket) = self.socket.take() {
            socket.close().await;
        }
        FollowEvent::Resync { reason, retry_in }
    }

    /// Schedules the next attempt: after the back-off (started over when a
    /// session that ended brought messages), which then doubles.
    fn wait(&mut self, session_ended: bool) -> Duration {
        if session_ended && self.got > 0 {
            self.backoff = self.settings.min_backoff;
            self.refused_since = None;
        }
        let wait = self.backoff;
        self.retry_at = Some(Instant::now() + wait);
        self.backoff = (self.backoff * 2).min(self.settings.max_backoff);
        wait
    }
}
