//! The generic webhook envoy: delivers committed actions whose type matches
//! to a URL, in order, at least once, with `Idempotency-Key:
//! <envoy>:<seq>`, retrying; records `webhook/delivered {seq, status}` after
//! each delivery (so it resumes from where it stopped, with no state of its
//! own) or `webhook/failed {seq, type, reason}` after giving up.

use std::sync::Arc;

use serde_json::json;

use crate::definition::{Envoy, Event, ResultAction, Trigger};
use crate::effects::Effects;

/// A webhook envoy named `name` (client `envoy-<name>`) delivering actions
/// whose type starts with one of `types` to `url`.
pub fn webhook(name: &str, types: Vec<String>, url: &str) -> Envoy {
    let url = url.to_string();
    let handler = Arc::new(move |event: Event, effects: Effects| {
        let url = url.clone();
        Box::pin(async move {
            let action = event.action.clone().unwrap_or_default();
            let kind = action["type"].as_str().unwrap_or("").to_string();
            let result = match effects.post_json(&url, &event.idempotency_key, &action).await {
                Ok(_) => ResultAction::new("webhook/delivered", json!({"seq": event.cause, "url": url})),
                Err(e) => ResultAction::new(
                    "webhook/failed",
                    json!({"seq": event.cause, "type": kind, "url": url, "reason": e.to_string()}),
                ),
            };
            vec![result]
        }) as futures_util::future::BoxFuture<'static, Vec<ResultAction>>
    });
    Envoy::new(name, Trigger::Types(types), handler)
}
