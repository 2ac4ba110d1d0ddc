//! The fixed keys the drafted reducers name on every action, made once:
//! `key("total")` allocates its text each time, a clone of one of these
//! only counts a reference (a reducer names a few dozen keys per action).

use std::sync::LazyLock;

use nodb_shared::Segment;
use nodb_shared::tree::Key;

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
