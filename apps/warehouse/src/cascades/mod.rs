//! The warehouse's cascaded views: [`marketing`] (units sold per product
//! in the last hour, day and week, and the fastest movers, from the
//! `activity` view) and [`lowstock`] (products under their threshold with
//! their reorder status and how long their stock lasts at the week's pace,
//! from the `stock` view and the `marketing` cascade — a cascade of a
//! cascade).

pub mod lowstock;
pub mod marketing;

use crate::keys::key;
use nodb_cascade::Cascade;
use nodb_shared::Tree;

/// The warehouse's cascades.
pub fn cascades() -> Vec<Cascade> {
    vec![marketing::cascade(), lowstock::cascade()]
}

/// The unsigned integer at `name` in `tree`, 0 when absent.
fn count(tree: Option<&Tree>, name: &str) -> u64 {
    tree.and_then(|t| t.get([key(name)])).and_then(Tree::as_u64).unwrap_or(0)
}

/// The entries of the object at `name` in `tree` (none when absent).
fn entries<'a>(tree: &'a Tree, name: &str) -> impl Iterator<Item = (&'a str, &'a Tree)> {
    tree.get([key(name)]).and_then(Tree::as_object).into_iter().flat_map(|o| o.iter().map(|(k, v)| (&**k, v)))
}
