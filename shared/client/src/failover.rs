//! Choosing among replicas: data views of one app following one chronicler
//! have the same seqs and byte-identical states, so a client may resume on
//! any of them with `since`. [`ReadyAnswer`] is what a replica's
//! `GET /ready` said; [`pick`] chooses the replica to go to next from the
//! answers, the same way the browser client does (`web/nodb/connection.js`).
//! No I/O: [`crate::ViewFollower`] asks, and tests feed answers by hand.

/// What a replica's `GET /ready` said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadyAnswer {
    /// The HTTP status (200 ready, 503 not).
    pub code: u16,
    /// The body's `status` (`ready`, `recovering`, `refused`), when readable.
    pub status: Option<String>,
    /// The body's `seq`, when readable.
    pub seq: Option<u64>,
}

/// How good a replica looks for resuming after `since` (lower is better):
/// 0, ready (200) and not behind; 1, no readable answer (`None`), or not
/// ready but not behind; 2, behind `since` (it would refuse `since` with
/// 400); 3, refusing its chronicler's log.
pub fn rank(answer: Option<&ReadyAnswer>, since: Option<u64>) -> u8 {
    let Some(answer) = answer else { return 1 };
    if answer.status.as_deref() == Some("refused") {
        return 3;
    }
    if let (Some(since), Some(seq)) = (since, answer.seq)
        && seq < since
    {
        return 2;
    }
    if answer.code == 200 { 0 } else { 1 }
}

/// The replica to go to: the best [`rank`], the first in turn from `start`
/// among equals; `None` while the answers cannot tell yet (an outer `None`:
/// not yet in; an inner `None`: no readable answer), i.e. until one ranked
/// 0 has answered with every replica before it in turn, or all have
/// answered. `start` must be below `answers.len()`.
pub fn pick(answers: &[Option<Option<ReadyAnswer>>], start: usize, since: Option<u64>) -> Option<usize> {
    let n = answers.len();
    let mut best: Option<(u8, usize)> = None;
    let mut complete = true;
    for k in 0..n {
        let i = (start + k) % n;
        let Some(answer) = &answers[i] else {
            complete = false;
            continue;
        };
        let rank = rank(answer.as_ref(), since);
        if rank == 0 && complete {
            return Some(i);
        }
        if best.is_none_or(|(r, _)| rank < r) {
            best = Some((rank, i));
        }
    }
    if complete { best.map(|(_, i)| i) } else { None }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(code: u16, status: &str, seq: u64) -> Option<Option<ReadyAnswer>> {
        Some(Some(ReadyAnswer { code, status: Some(status.to_string()), seq: Some(seq) }))
    }

    #[test]
    fn ranks_ready_then_silent_or_recovering_then_behind_then_refused() {
        let ready = ReadyAnswer { code: 200, status: Some("ready".into()), seq: Some(10) };
        assert_eq!(rank(Some(&ready), Some(10)), 0, "at since is not behind");
        assert_eq!(rank(Some(&ready), None), 0);
        assert_eq!(rank(Some(&ready), Some(11)), 2, "behind since");
        assert_eq!(rank(None, Some(11)), 1, "no answer: still tried");
        let recovering = ReadyAnswer { code: 503, status: Some("recovering".into()), seq: Some(12) };
        assert_eq!(rank(Some(&recovering), Some(11)), 1);
        let refused = ReadyAnswer { code: 503, status: Some("refused".into()), seq: Some(99) };
        assert_eq!(rank(Some(&refused), Some(1)), 3);
        let odd = ReadyAnswer { code: 200, status: None, seq: None };
        assert_eq!(rank(Some(&odd), Some(5)), 0, "a 200 without a readable seq counts as ready");
    }

    #[test]
    fn picks_the_first_ready_in_turn_as_soon_as_the_answers_tell() {
        let since = Some(10);
        // Replica 1 (first in turn from 1) is ready: no need to wait for 0 or 2.
        assert_eq!(pick(&[None, answer(200, "ready", 10), None], 1, since), Some(1));
        // Replica 2 is ready, but 1 before it in turn has not answered yet.
        assert_eq!(pick(&[None, None, answer(200, "ready", 10)], 1, since), None);
        // 1 is behind: 2 (ready) is next in turn.
        assert_eq!(pick(&[None, answer(200, "ready", 9), answer(200, "ready", 12)], 1, since), Some(2));
        // Nobody ready: the best rank, first in turn among equals.
        let all = [Some(None), answer(200, "ready", 3), answer(503, "recovering", 11)];
        assert_eq!(pick(&all, 1, since), Some(2), "not ready beats behind");
        assert_eq!(pick(&[Some(None), Some(None), answer(503, "refused", 20)], 2, since), Some(0));
        assert_eq!(pick(&[answer(503, "refused", 20)], 0, since), Some(0), "one replica: that one");
        // Wraps around from `start`; ready beats silent.
        assert_eq!(pick(&[Some(None), Some(None), Some(None)], 1, since), Some(1), "none answered: next in turn");
        assert_eq!(pick(&[answer(200, "ready", 10), Some(None), Some(None)], 1, since), Some(0));
        assert_eq!(pick(&[answer(200, "ready", 10), answer(200, "ready", 1), Some(None)], 1, since), Some(0));
    }
}
