//! Myers' O(ND) shortest edit script between two sequences, bounded: it
//! gives up past a maximum number of edits, so a caller can fall back to a
//! cheaper, coarser diff when the sequences are mostly different.

/// One step of an edit script, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edit {
    /// The next old element stays.
    Keep,
    /// The next old element goes.
    Delete,
    /// The next new element comes in.
    Insert,
}

/// The shortest edit script turning `a` into `b` with at most `max_d`
/// deletions plus insertions, or `None` if it needs more.
///
/// Cost: O((n + m) · d) time and O(d²) memory for a script of `d` edits.
pub fn edit_script<T: PartialEq>(a: &[T], b: &[T], max_d: usize) -> Option<Vec<Edit>> {
    let (n, m) = (a.len() as isize, b.len() as isize);
    let max_d = max_d.min(a.len() + b.len()) as isize;
    let offset = max_d + 1;
    let mut v = vec![0isize; (2 * max_d + 3) as usize];
    let mut trace: Vec<Vec<isize>> = Vec::new();
    let at = |k: isize| (k + offset) as usize;
    for d in 0..=max_d {
        trace.push(v.clone());
        let mut k = -d;
        while k <= d {
            let mut x =
                if k == -d || (k != d && v[at(k - 1)] < v[at(k + 1)]) { v[at(k + 1)] } else { v[at(k - 1)] + 1 };
            let mut y = x - k;
            while x < n && y < m && a[x as usize] == b[y as usize] {
                x += 1;
                y += 1;
            }
            v[at(k)] = x;
            if x >= n && y >= m {
                return Some(backtrack(&trace, n, m, d, offset));
            }
            k += 2;
        }
    }
    None
}

fn backtrack(trace: &[Vec<isize>], n: isize, m: isize, last_d: isize, offset: isize) -> Vec<Edit> {
    let at = |k: isize| (k + offset) as usize;
    let mut edits = Vec::new();
    let (mut x, mut y) = (n, m);
    for d in (0..=last_d).rev() {
        let v = &trace[d as usize];
        let k = x - y;
        let prev_k = if k == -d || (k != d && v[at(k - 1)] < v[at(k + 1)]) { k + 1 } else { k - 1 };
        let prev_x = if d == 0 { 0 } else { v[at(prev_k)] };
        let prev_y = if d == 0 { 0 } else { prev_x - prev_k };
        while x > prev_x && y > prev_y {
            edits.push(Edit::Keep);
            x -= 1;
            y -= 1;
        }
        if d > 0 {
            edits.push(if x == prev_x { Edit::Insert } else { Edit::Delete });
        }
        x = prev_x;
        y = prev_y;
    }
    edits.reverse();
    edits
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn apply(a: &[u8], b: &[u8], script: &[Edit]) -> Vec<u8> {
        let (mut i, mut j) = (0, 0);
        let mut out = Vec::new();
        for e in script {
            match e {
                Edit::Keep => {
                    assert_eq!(a[i], b[j]);
                    out.push(a[i]);
                    i += 1;
                    j += 1;
                }
                Edit::Delete => i += 1,
                Edit::Insert => {
                    out.push(b[j]);
                    j += 1;
                }
            }
        }
        assert_eq!((i, j), (a.len(), b.len()));
        out
    }

    #[test]
    fn sliding_window_is_two_edits() {
        let a = [1, 2, 3, 4, 5];
        let b = [2, 3, 4, 5, 6];
        let s = edit_script(&a, &b, 10).unwrap();
        assert_eq!(s.iter().filter(|e| **e != Edit::Keep).count(), 2);
        assert_eq!(edit_script(&a, &b, 1), None);
    }

    proptest! {
        #[test]
        fn scripts_are_correct_and_minimal(a in proptest::collection::vec(0u8..4, 0..30), b in proptest::collection::vec(0u8..4, 0..30)) {
            let s = edit_script(&a, &b, 100).unwrap();
            prop_assert_eq!(apply(&a, &b, &s), b.clone());
            // Minimal: deletions + insertions = n + m - 2·LCS.
            let lcs = {
                let mut t = vec![vec![0usize; b.len() + 1]; a.len() + 1];
                for i in 0..a.len() {
                    for j in 0..b.len() {
                        t[i + 1][j + 1] = if a[i] == b[j] { t[i][j] + 1 } else { t[i][j + 1].max(t[i + 1][j]) };
                    }
                }
                t[a.len()][b.len()]
            };
            prop_assert_eq!(s.iter().filter(|e| **e != Edit::Keep).count(), a.len() + b.len() - 2 * lcs);
        }
    }
}
