//! The warehouse's envoy `reorder`, which orders from a supplier when a
//! product's stock falls below its threshold.

use std::sync::Arc;

use crate::keys::key;
use nodb_envoy::{Config, Effects, Envoy, Event, ResultAction, Trigger};
use nodb_shared::Tree;
use serde_json::json;

/// The warehouse's envoys, with the supplier's URL from `--set supplier=URL`.
///
/// # Errors
/// The missing setting, named.
pub fn envoys(config: &Config) -> Result<Vec<Envoy>, String> {
    let supplier = config
        .get("supplier")
        .ok_or("the warehouse's reorder envoy needs the supplier's URL: --set supplier=http://HOST:PORT")?;
    Ok(vec![reorder(supplier)])
}

/// A product of the `stock` view (an entry of `/products`): its reorder,
/// if that is pending.
pub fn pending_reorder(product: &Tree) -> Option<Tree> {
    let reorder = product.get([key("reorder")])?;
    (reorder.get([key("status")])?.as_str() == Some("pending")).then(|| reorder.clone())
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
    let trigger = Trigger::Entries { view: "stock".into(), under: "/products".into(), pick: Arc::new(pending_reorder) };
    Envoy::new("reorder", trigger, handler).independent(8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pending_reorder_is_picked() {
        let apple = Tree::from(json!({"total": 1, "reorder": {"status": "pending", "seq": 4, "quantity": 20}}));
        let pear = Tree::from(json!({"total": 1, "reorder": {"status": "placed", "seq": 2, "quantity": 5}}));
        let kiwi = Tree::from(json!({"total": 9}));
        let picked = pending_reorder(&apple).unwrap();
        assert_eq!(picked.get([key("quantity")]).and_then(Tree::as_u64), Some(20));
        assert!(pending_reorder(&pear).is_none() && pending_reorder(&kiwi).is_none());
        assert!(envoys(&Config::new()).is_err(), "reorder needs a supplier");
    }
}
