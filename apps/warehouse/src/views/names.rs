//! The fixed keys the drafted reducers name on every action, and the
//! action types `activity` writes in every entry, made once: a clone of
//! one of these only counts a reference where making it again would
//! allocate its text (a reducer names a few dozen keys per action).

use std::sync::LazyLock;

use nodb_shared::tree::Key;
use nodb_shared::{Segment, Tree};

use crate::keys::key;

/// Statics of type `$ty`, each made once from its text by `$make`, with
/// a doc line of `$what` around the text.
macro_rules! made_once {
    ($ty:ty, $make:expr, $what:literal: $($name:ident = $text:literal),* $(,)?) => {
        $(
            #[doc = concat!("The ", $what, " `", $text, "`.")]
            pub(crate) static $name: LazyLock<$ty> = LazyLock::new(|| $make($text));
        )*
    };
}

made_once! {
    Segment, key, "key":
    PRODUCTS = "products",
    TOTAL = "total",
    LOCATIONS = "locations",
    THRESHOLD = "threshold",
    REORDER = "reorder",
    RECENT = "recent",
    COUNTS = "counts",
    SALES = "sales",
    LATEST_TS = "latest_ts",
    MINUTES = "minutes",
    HOURS = "hours",
}

made_once! {
    Key, Key::from, "key of an entry of `recent`":
    SEQ = "seq",
    TS = "ts",
    TYPE = "type",
    PRODUCT = "product",
    LOCATION = "location",
    QUANTITY = "quantity",
    FROM = "from",
    TO = "to",
    REASON = "reason",
    THRESHOLD_KEY = "threshold",
    SUPPLIER_REF = "supplier_ref",
}

made_once! {
    Tree, Tree::from, "`type` of an entry of `recent`":
    CORRECTED_TYPE = "stock/corrected",
    MOVED_TYPE = "stock/moved",
    SOLD_TYPE = "stock/sold",
    DESTROYED_TYPE = "stock/destroyed",
    THRESHOLD_SET_TYPE = "stock/threshold_set",
    REORDER_PLACED_TYPE = "reorder/placed",
    REORDER_FAILED_TYPE = "reorder/failed",
}
