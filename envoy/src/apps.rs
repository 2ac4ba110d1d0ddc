//! The envoys of the built-in apps: `warehouse` has `reorder`, which orders
//! from a supplier when a product's stock falls below its threshold.

use std::collections::BTreeMap;
use std::sync::Arc;

use nodb_shared::{Segment, Tree};
use serde_json::json;

use crate::definition::{Envoy, Event, ResultAction, Trigger};
use crate::effects::Effects;

/// Settings an app's envoys read (`--set key=value`).
pub type Config = BTreeMap<String, String>;

/// The envoys of the built-in app `app` (none for an app without any).
///
/// # Errors
/// A missing or bad setting, named.
pub fn built_in(app: &str, config: &Config) -> Result<Vec<Envoy>, String> {
    match app {
        "warehouse" => {
            let supplier = config
                .get("supplier")
                .ok_or("the warehouse's reorder envoy needs the supplier's URL: --set supplier=http://HOST:PORT")?;
            Ok(vec![reorder(supplier)])
        }
        _ => Ok(Vec::new()),
    }
}

fn key(s: &str) -> Segment {
    Segment::Key(s.into())
}

/// The products of the `stock` view whose reorder is pending, with it.
pub fn pending_reorders(stock: &Tree) -> BTreeMap<String, Tree> {
    let Some(Tree::Object(products)) = stock.get([key("products")]) else { return BTreeMap::new() };
    products
        .iter()
        .filter_map(|(name, entry)| {
            let reorder = entry.get([key("reorder")])?;
            (reorder.get([key("status")])?.as_str() == Some("pending")).then(|| (name.to_string(), reorder.clone()))
        })
        .collect()
}

/// `reorder`: when a product's reorder becomes pending in the `stock` view,
/// POSTs `{product, quantity}` to `<supplier>/orders` and records
/// `reorder/placed {product, quantity, supplier_ref}` or, after the last
/// retry, `reorder/failed {product, reason}`. Orders of different products
/// are independent (up to 8 at once).
pub fn reorder(supplier: &str) -> Envoy {
    let url = format!("{}/orders", supplier.trim_end_matches('/'));
    let handler = Arc::new(move |event: Event, effects: Effects| {
        let url = url.clone();
        Box::pin(async move {
            let product = event.key.clone().unwrap_or_default();
            let quantity =
                event.data.as_ref().and_then(|d| d.get([key("quantity")])).and_then(Tree::as_u64).unwrap_or(1);
            let body = json!({"product": product, "quantity": quantity});
            let result = match effects.post_json(&url, &event.idempotency_key, &body).await {
                Ok(order) => ResultAction::new(
                    "reorder/placed",
                    json!({"product": product, "quantity": quantity,
                           "supplier_ref": order["supplier_ref"].as_str().unwrap_or("unknown")}),
                ),
                Err(e) => ResultAction::new("reorder/failed", json!({"product": product, "reason": e.to_string()})),
            };
            vec![result]
        }) as futures_util::future::BoxFuture<'static, Vec<ResultAction>>
    });
    Envoy::new("reorder", Trigger::View { view: "stock".into(), select: Arc::new(pending_reorders) }, handler)
        .independent(8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_reorders_are_selected_by_product() {
        let stock = Tree::from(json!({"products": {
            "apple": {"total": 1, "reorder": {"status": "pending", "seq": 4, "quantity": 20}},
            "pear": {"total": 1, "reorder": {"status": "placed", "seq": 2, "quantity": 5}},
            "kiwi": {"total": 9}
        }}));
        let selected = pending_reorders(&stock);
        assert_eq!(selected.keys().collect::<Vec<_>>(), ["apple"]);
        assert_eq!(selected["apple"].get([key("quantity")]).and_then(Tree::as_u64), Some(20));
        assert!(built_in("warehouse", &Config::new()).is_err());
        assert!(built_in("json", &Config::new()).unwrap().is_empty());
    }
}
