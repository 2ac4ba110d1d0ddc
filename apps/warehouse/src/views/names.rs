//! The fixed keys the drafted reducers name on every action, and the
//! action types `activity` writes in every entry, made once: a clone of
//! one of these only counts a reference where making it again would
//! allocate its text (a reducer names a few dozen keys per action).

use std::sync::LazyLock;

use nodb_shared::tree::Key;
use nodb_shared::{Segment, Tree};

use crate::keys::key;

macro_rules! names {
    ($($name:ident = $text:literal),* $(,)?) => {
        $(
            #[doc = concat!("The key `", $text, "`.")]
            pub(crate) static $name: LazyLock<Segment> = LazyLock::new(|| key($text));
        )*
    };
}

names! {
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

macro_rules! entry_keys {
    ($($name:ident = $text:literal),* $(,)?) => {
        $(
            #[doc = concat!("The key `", $text, "` of an entry of `recent`.")]
            pub(crate) static $name: LazyLock<Key> = LazyLock::new(|| Key::from($text));
        )*
    };
}

entry_keys! {
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

macro_rules! type_strings {
    ($($name:ident = $text:literal),* $(,)?) => {
        $(
            #[doc = concat!("The string `", $text, "`, the `type` of its entries in `recent`.")]
            pub(crate) static $name: LazyLock<Tree> = LazyLock::new(|| Tree::from($text));
        )*
    };
}

type_strings! {
    CORRECTED_TYPE = "stock/corrected",
    MOVED_TYPE = "stock/moved",
    SOLD_TYPE = "stock/sold",
    DESTROYED_TYPE = "stock/destroyed",
    THRESHOLD_SET_TYPE = "stock/threshold_set",
    REORDER_PLACED_TYPE = "reorder/placed",
    REORDER_FAILED_TYPE = "reorder/failed",
}
