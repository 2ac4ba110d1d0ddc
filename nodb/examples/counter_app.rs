//! An application with views of its own, run with the whole `nodb` command
//! line: `cargo run -p nodb --example counter_app -- dataview --app counter`.
//!
//! Its one view, `count`, counts `counter/added {by}` actions; negative
//! amounts are rejected. See `docs/apps.md`.

use nodb::{App, Registry};
use nodb_dataview::reducer::{Reduced, Rejection, View, typed};
use nodb_shared::Tree;
use nodb_shared::protocol::CommittedAction;

#[derive(serde::Deserialize)]
#[serde(tag = "type", content = "payload")]
enum Counter {
    #[serde(rename = "counter/added")]
    Added { by: i64 },
    #[serde(other)]
    Other,
}

fn count(state: &Tree, action: &CommittedAction) -> Reduced {
    match typed::<Counter>(action)? {
        Counter::Added { by } if by < 0 => Err(Rejection::new("counters only go up")),
        Counter::Added { by } => Ok(state.set("/value", state.get("/value").and_then(Tree::as_i64).unwrap_or(0) + by)?),
        Counter::Other => Ok(state.clone()),
    }
}

fn counter_app() -> App {
    App {
        name: "counter".into(),
        views: vec![View::new("count", Tree::from_entries([("value", Tree::from(0))]), count)],
    }
}

fn main() -> std::process::ExitCode {
    nodb::main_with(Registry::built_in().with("counter", counter_app))
}
