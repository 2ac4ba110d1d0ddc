//! Serde for [`Tree`]: straight to and from JSON text, with no detour
//! through `serde_json::Value`.

use std::fmt;
use std::sync::Arc;

use imbl::Vector;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

use super::{Key, Number, Tree};

impl Serialize for Tree {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Tree::Null => s.serialize_unit(),
            Tree::Bool(b) => s.serialize_bool(*b),
            Tree::Number(n) => n.serialize_into(s),
            Tree::String(v) => s.serialize_str(v),
            Tree::Array(a) => {
                let mut seq = s.serialize_seq(Some(a.len()))?;
                for item in a.iter() {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Tree::Object(o) => {
                let mut map = s.serialize_map(Some(o.len()))?;
                for (k, v) in o.iter() {
                    map.serialize_entry(&**k, v)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Tree {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Tree, D::Error> {
        d.deserialize_any(TreeVisitor)
    }
}

struct TreeVisitor;

impl<'de> Visitor<'de> for TreeVisitor {
    type Value = Tree;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Tree, E> {
        Ok(Tree::Null)
    }

    fn visit_none<E>(self) -> Result<Tree, E> {
        Ok(Tree::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Tree, D::Error> {
        Tree::deserialize(d)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Tree, E> {
        Ok(Tree::Bool(b))
    }

    fn visit_i64<E>(self, i: i64) -> Result<Tree, E> {
        Ok(Tree::Number(Number::from_i64(i)))
    }

    fn visit_u64<E>(self, u: u64) -> Result<Tree, E> {
        Ok(Tree::Number(Number::from_u64(u)))
    }

    fn visit_f64<E: de::Error>(self, f: f64) -> Result<Tree, E> {
        Number::from_f64(f).map(Tree::Number).ok_or_else(|| E::custom("JSON numbers must be finite"))
    }

    fn visit_str<E>(self, s: &str) -> Result<Tree, E> {
        Ok(Tree::String(s.into()))
    }

    fn visit_string<E>(self, s: String) -> Result<Tree, E> {
        Ok(Tree::String(s.into()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Tree, A::Error> {
        let mut v = Vector::new();
        while let Some(item) = seq.next_element::<Tree>()? {
            v.push_back(item);
        }
        Ok(Tree::Array(Arc::new(v)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tree, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(4096));
        while let Some(k) = map.next_key::<KeyDe>()? {
            entries.push((k.0, map.next_value::<Tree>()?));
        }
        // As with serde_json's own Value, a later duplicate key wins.
        Ok(Tree::Object(entries.into_iter().collect()))
    }
}

/// The entries of a JSON object in the order its text gives them, a
/// duplicate key kept as often as it appears: for a caller that reads one
/// object in pieces (a snapshot's big map, read on several threads) and
/// joins them with [`Object`](super::Object)'s `from_iter`, which orders
/// them and lets a later duplicate win, as reading it whole does.
#[derive(Debug, Default)]
pub struct Entries(pub Vec<(Key, Tree)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Entries, D::Error> {
        struct EntriesVisitor;
        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(4096));
                while let Some(k) = map.next_key::<KeyDe>()? {
                    entries.push((k.0, map.next_value::<Tree>()?));
                }
                Ok(Entries(entries))
            }
        }
        d.deserialize_map(EntriesVisitor)
    }
}

/// A key read without an intermediate `String` when the input allows.
struct KeyDe(Key);

impl<'de> Deserialize<'de> for KeyDe {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<KeyDe, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = KeyDe;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_str<E>(self, s: &str) -> Result<KeyDe, E> {
                Ok(KeyDe(s.into()))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_in_key_order() {
        let t: Tree = serde_json::from_str(r#"{"b":[1,2.5,"x",null,true],"a":{"z":1,"y":-2}}"#).unwrap();
        assert_eq!(t.to_json_string(), r#"{"a":{"y":-2,"z":1},"b":[1,2.5,"x",null,true]}"#);
    }

    #[test]
    fn integral_floats_print_as_integers() {
        let t: Tree = serde_json::from_str("[1.0, -0.0, 1e2, 1.5]").unwrap();
        assert_eq!(t.to_json_string(), "[1,0,100,1.5]");
    }

    #[test]
    fn entries_keep_the_text_order_and_duplicates() {
        let Entries(e) = serde_json::from_str(r#"{"b":1,"a":{"x":2},"b":3}"#).unwrap();
        let keys: Vec<&str> = e.iter().map(|(k, _)| &**k).collect();
        assert_eq!(keys, ["b", "a", "b"]);
        assert_eq!(e[1].1.to_json_string(), r#"{"x":2}"#);
        assert!(serde_json::from_str::<Entries>("[1]").is_err());
    }

    #[test]
    fn duplicate_keys_last_wins() {
        let t: Tree = serde_json::from_str(r#"{"a":1,"a":2}"#).unwrap();
        assert_eq!(t.to_json_string(), r#"{"a":2}"#);
    }
}
