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
//!
//! Given several data views of one app following one chronicler (replicas:
//! the same seqs, byte-identical states; see [`ViewFollower::on_replicas`]),
//! it uses one at a time, the first to begin with. When a connection fails
//! or the stream drops, it goes on (after the usual back-off) to the next in
//! turn, or, better, to the first in turn whose `GET /ready` says 200 with a
//! `seq` not behind the replica's (all asked at once, without a token, for
//! at most [`FollowSettings::ready_timeout`]; a replica that does not answer
//! is still tried, after the ready ones, and one refusing its chronicler's
//! log last; see [`crate::failover`]). It resumes there with `since` and
//! `version`, so no seq is lost or applied twice. A replica that has not
//! reached `since` refuses it: the follower moves on to the next, and takes
//! a snapshot only when the refusals have lasted the resume grace and
//! numbered at least one per replica. Bad data resyncs from a snapshot on
//! the same replica. The browser client does the same (`web/README.md`).

use std::time::Duration;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use nodb_shared::protocol::{ErrorCode, ServerMessage};
use tokio::time::Instant;

use crate::error::{Error, Refusal};
use crate::failover::{ReadyAnswer, pick};
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
    /// With several replicas: how long each one's `GET /ready` may take
    /// when choosing where to go next; `None` never asks (round robin).
    pub ready_timeout: Option<Duration>,
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
            ready_timeout: Some(Duration::from_secs(1)),
        }
    }
}

/// What happened next, from [`ViewFollower::next`].
#[derive(Debug)]
pub enum FollowEvent {
    /// The stream is open.
    Connected {
        /// Its URL (on the replica in use, [`ViewFollower::view`]).
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
    /// `since` after `retry_in` (on the next replica, when it has several).
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
    /// reached it). With `retry_in`, the follower waits for it (or, with
    /// several replicas, tries the next); without, the grace is over and it
    /// takes a fresh snapshot now.
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
    /// The replicas of the view: one, or several data views of one app.
    views: Vec<ViewClient>,
    /// The one in use, or to be connected to.
    index: usize,
    /// Whether the next connection goes to another replica (chosen first).
    move_on: bool,
    settings: FollowSettings,
    replica: Replica,
    socket: Option<ViewStream>,
    /// Whether the next connection resumes with `since`.
    resume: bool,
    /// Since when the server has refused to resume.
    refused_since: Option<Instant>,
    /// Refusals to resume since then.
    refusals: usize,
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
            views: vec![view],
            index: 0,
            move_on: false,
            backoff: settings.min_backoff,
            settings,
            replica,
            socket: None,
            resume: true,
            refused_since: None,
            refusals: 0,
            retry_at: None,
            got: 0,
        }
    }

    /// Follows one view on several replicas (data views of one app following
    /// one chronicler), from a snapshot, failing over from one to the next
    /// (see the module docs). The first is used first.
    ///
    /// # Panics
    /// If `views` is empty.
    pub fn on_replicas(views: Vec<ViewClient>, settings: FollowSettings) -> ViewFollower {
        let mut views = views.into_iter();
        let first = views.next().expect("ViewFollower::on_replicas needs at least one view");
        ViewFollower::new(first, settings).with_replicas(views)
    }

    /// The same follower, with `others` (replicas of the same view) to fail
    /// over to after the ones it has.
    pub fn with_replicas(mut self, others: impl IntoIterator<Item = ViewClient>) -> ViewFollower {
        self.views.extend(others);
        self
    }

    /// The replica.
    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// The view followed: on the replica in use (or to be connected to).
    pub fn view(&self) -> &ViewClient {
        &self.views[self.index]
    }

    /// Every replica of the view, in the order given.
    pub fn views(&self) -> &[ViewClient] {
        &self.views
    }

    /// The index in [`ViewFollower::views`] of the replica in use (or to be
    /// connected to).
    pub fn replica_index(&self) -> usize {
        self.index
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
        if self.move_on {
            // Chosen before the flag is cleared: cancelled while asking, the
            // next call asks again.
            self.index = self.choose(since).await;
            self.move_on = false;
        }
        let version = since.and(self.replica.version().map(str::to_string));
        let options =
            StreamOptions { since, exact: self.settings.exact, client: self.settings.client.clone(), version };
        match self.views[self.index].open(&options).await {
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
                    self.refusals += 1;
                    // Another replica may have reached `since`: try it next.
                    self.move_on = self.views.len() > 1;
                    if waited >= self.settings.resume_grace && self.refusals >= self.views.len() {
                        self.refused_since = None;
                        self.refusals = 0;
                        self.resume = false;
                        return Some(FollowEvent::ResumeRefused { refusal, waited, retry_in: None });
                    }
                    let retry_in = self.wait(false);
                    Some(FollowEvent::ResumeRefused { refusal, waited, retry_in: Some(retry_in) })
                }
                None => {
                    self.move_on = self.views.len() > 1;
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
        self.move_on = self.views.len() > 1;
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
            self.refusals = 0;
        }
        let wait = self.backoff;
        self.retry_at = Some(Instant::now() + wait);
        self.backoff = (self.backoff * 2).min(self.settings.max_backoff);
        wait
    }

    /// The replica to connect to next, with the replica at `since`: the
    /// next in turn, or the best one `/ready` names (see [`pick`]).
    async fn choose(&self, since: Option<u64>) -> usize {
        let n = self.views.len();
        let start = (self.index + 1) % n;
        let Some(timeout) = self.settings.ready_timeout.filter(|_| n > 1) else { return start };
        let mut answers: Vec<Option<Option<ReadyAnswer>>> = vec![None; n];
        let mut asking: FuturesUnordered<_> = self
            .views
            .iter()
            .enumerate()
            .map(|(i, view)| async move { (i, tokio::time::timeout(timeout, view.ready()).await) })
            .collect();
        while let Some((i, answer)) = asking.next().await {
            answers[i] = Some(answer.ok().and_then(Result::ok));
            if let Some(chosen) = pick(&answers, start, since) {
                return chosen;
            }
        }
        start
    }
}
