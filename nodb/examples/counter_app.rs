//! An application with views, an envoy and a cascade of its own, run with
//! the whole `nodb` command line:
//!
//! ```sh
//! cargo run -p nodb --example counter_app -- dataview --app counter
//! cargo run -p nodb --example counter_app -- envoy --app counter --dataview http://127.0.0.1:7402
//! cargo run -p nodb --example counter_app -- cascade --app counter --upstream count=http://127.0.0.1:7402
//! ```
//!
//! - the view `count` counts `counter/added {by}` actions; negative amounts
//!   are rejected;
//! - the envoy `milestone` fires when the count reaches 10, 100 or 1000,
//!   tells `--set notify=URL` if given (a POST with an idempotency key),
//!   and records `counter/milestone {milestone, notified}`;
//! - the cascade `progress` derives, from `count`, the milestones reached
//!   and the next one.
//!
//! See `docs/apps.md`.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use nodb::{App, Registry};
use nodb_cascade::Cascade;
use nodb_dataview::reducer::{Reduced, Rejection, View, typed};
use nodb_envoy::Config;
use nodb_envoy::{Effects, Envoy, Event, ResultAction, Trigger};
use nodb_shared::Tree;
use nodb_shared::protocol::CommittedAction;
use serde_json::json;

/// The counts worth celebrating.
const MILESTONES: [i64; 3] = [10, 100, 1000];

#[derive(serde::Deserialize)]
#[serde(tag = "type", content = "payload")]
enum Counter {
    #[serde(rename = "counter/added")]
    Added { by: i64 },
    #[serde(other)]
    Other,
}

fn value(state: &Tree) -> i64 {
    state.get("/value").and_then(Tree::as_i64).unwrap_or(0)
}

fn count(state: &Tree, action: &CommittedAction) -> Reduced {
    match typed::<Counter>(action)? {
        Counter::Added { by } if by < 0 => Err(Rejection::new("counters only go up")),
        Counter::Added { by } => Ok(state.set("/value", value(state) + by)?),
        Counter::Other => Ok(state.clone()),
    }
}

fn counter_app() -> App {
    App {
        name: "counter".into(),
        views: vec![View::new("count", Tree::from_entries([("value", Tree::from(0))]), count)],
    }
}

/// The milestones the count has reached, keyed by their number: the envoy
/// fires once for each key that appears.
fn reached(count: &Tree) -> BTreeMap<String, Tree> {
    MILESTONES.iter().filter(|m| value(count) >= **m).map(|m| (m.to_string(), Tree::from(*m))).collect()
}

fn counter_envoys(config: &Config) -> Result<Vec<Envoy>, String> {
    let notify = config.get("notify").cloned();
    let handler = Arc::new(move |event: Event, effects: Effects| {
        let notify = notify.clone();
        Box::pin(async move {
            let milestone = event.key.clone().unwrap_or_default();
            let notified = match &notify {
                Some(url) => {
                    let body = json!({"milestone": milestone});
                    match effects.post_json(url, &event.idempotency_key, &body).await {
                        Ok(_) => json!(true),
                        Err(e) => json!(e.to_string()),
                    }
                }
                None => json!(false),
            };
            vec![ResultAction::new("counter/milestone", json!({"milestone": milestone, "notified": notified}))]
        }) as BoxFuture<'static, Vec<ResultAction>>
    });
    let trigger = Trigger::View { view: "count".into(), select: Arc::new(reached) };
    Ok(vec![Envoy::new("milestone", trigger, handler)])
}

fn counter_cascades() -> Vec<Cascade> {
    vec![Cascade::new("progress", ["count"], |up: &[&Tree]| {
        let v = value(up[0]);
        let next = MILESTONES.iter().find(|m| v < **m).map_or(Tree::Null, |m| Tree::from(*m));
        Tree::from_entries([
            ("reached", Tree::from_items(MILESTONES.iter().filter(|m| v >= **m).map(|m| Tree::from(*m)))),
            ("next", next),
        ])
    })]
}

fn main() -> std::process::ExitCode {
    nodb::main_with(
        Registry::built_in()
            .with("counter", counter_app)
            .with_envoys("counter", counter_envoys)
            .with_cascades("counter", counter_cascades),
    )
}
