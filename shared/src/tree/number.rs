//! JSON numbers in one canonical form.

use std::cmp::Ordering;
use std::fmt;

/// A JSON number, kept in a canonical form so that numerically equal numbers
/// are also represented (and therefore serialised) identically.
///
/// RFC 6902 §4.6 says `1` and `1.0` are equal. nodb promises that equal
/// states serialise byte-identically, so a float with an integral value that
/// fits an integer is stored as that integer: `1.0` becomes `1`, `-0.0`
/// becomes `0`. Only numbers with a fractional part, or integral values
/// beyond the 64-bit range, stay floats. Non-finite floats cannot be
/// represented in JSON and are refused by [`Number::from_f64`].
#[derive(Clone, Copy, Debug)]
pub struct Number(N);

#[derive(Clone, Copy, Debug)]
enum N {
    /// Any integer that fits an `i64`.
    Int(i64),
    /// Integers above `i64::MAX`.
    UInt(u64),
    /// A finite float that is not an integer in the 64-bit range.
    Float(f64),
}

// Both bounds are powers of two, so exactly representable as f64.
const I64_MIN_F: f64 = -9_223_372_036_854_775_808.0;
const U64_END_F: f64 = 18_446_744_073_709_551_616.0;

impl Number {
    /// The number for a signed integer.
    pub fn from_i64(i: i64) -> Self {
        Number(N::Int(i))
    }

    /// The number for an unsigned integer.
    pub fn from_u64(u: u64) -> Self {
        match i64::try_from(u) {
            Ok(i) => Number(N::Int(i)),
            Err(_) => Number(N::UInt(u)),
        }
    }

    /// The number for a float, or `None` if it is NaN or infinite (JSON has
    /// no such numbers). Integral values are stored as integers.
    pub fn from_f64(f: f64) -> Option<Self> {
        if !f.is_finite() {
            return None;
        }
        if f.fract() == 0.0 && (I64_MIN_F..U64_END_F).contains(&f) {
            // Exact: f is integral and inside the range of one of the types.
            if f < 0.0 || f < 9_223_372_036_854_775_808.0 {
                return Some(Number(N::Int(f as i64)));
            }
            return Some(Number(N::UInt(f as u64)));
        }
        Some(Number(N::Float(f)))
    }

    /// The value as an `i64`, if it is an integer in that range.
    pub fn as_i64(&self) -> Option<i64> {
        match self.0 {
            N::Int(i) => Some(i),
            _ => None,
        }
    }

    /// The value as a `u64`, if it is a non-negative integer in that range.
    pub fn as_u64(&self) -> Option<u64> {
        match self.0 {
            N::Int(i) => u64::try_from(i).ok(),
            N::UInt(u) => Some(u),
            N::Float(_) => None,
        }
    }

    /// The value as an `f64` (possibly rounded for very large integers).
    pub fn as_f64(&self) -> f64 {
        match self.0 {
            N::Int(i) => i as f64,
            N::UInt(u) => u as f64,
            N::Float(f) => f,
        }
    }

    /// Whether the number is an integer (held exactly).
    pub fn is_integer(&self) -> bool {
        !matches!(self.0, N::Float(_))
    }

    pub(crate) fn to_json(self) -> serde_json::Number {
        match self.0 {
            N::Int(i) => i.into(),
            N::UInt(u) => u.into(),
            // Finite by construction.
            N::Float(f) => serde_json::Number::from_f64(f).unwrap_or_else(|| 0.into()),
        }
    }

    pub(crate) fn from_json(n: &serde_json::Number) -> Self {
        if let Some(i) = n.as_i64() {
            Number::from_i64(i)
        } else if let Some(u) = n.as_u64() {
            Number::from_u64(u)
        } else {
            // serde_json never holds a non-finite float.
            Number::from_f64(n.as_f64().unwrap_or(0.0)).unwrap_or(Number(N::Int(0)))
        }
    }

    pub(crate) fn serialize_into<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            N::Int(i) => s.serialize_i64(i),
            N::UInt(u) => s.serialize_u64(u),
            N::Float(f) => s.serialize_f64(f),
        }
    }
}

impl PartialEq for Number {
    fn eq(&self, other: &Self) -> bool {
        // Canonical form makes representation equality numeric equality.
        match (self.0, other.0) {
            (N::Int(a), N::Int(b)) => a == b,
            (N::UInt(a), N::UInt(b)) => a == b,
            (N::Float(a), N::Float(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Number {}

impl PartialOrd for Number {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Number {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.0, other.0) {
            (N::Int(a), N::Int(b)) => a.cmp(&b),
            (N::UInt(a), N::UInt(b)) => a.cmp(&b),
            (N::Int(_), N::UInt(_)) => Ordering::Less,
            (N::UInt(_), N::Int(_)) => Ordering::Greater,
            _ => self.as_f64().total_cmp(&other.as_f64()),
        }
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.to_json(), f)
    }
}

macro_rules! from_int {
    ($($t:ty => $via:ident),*) => {$(
        impl From<$t> for Number {
            fn from(v: $t) -> Self {
                Number::$via(v.into())
            }
        }
    )*};
}
from_int!(i8 => from_i64, i16 => from_i64, i32 => from_i64, i64 => from_i64,
          u8 => from_u64, u16 => from_u64, u32 => from_u64, u64 => from_u64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integral_floats_become_integers() {
        assert_eq!(Number::from_f64(1.0), Some(Number::from_i64(1)));
        assert_eq!(Number::from_f64(-0.0), Some(Number::from_i64(0)));
        assert_eq!(Number::from_f64(1e19), Some(Number::from_u64(10_000_000_000_000_000_000)));
        assert!(!Number::from_f64(1e20).unwrap().is_integer());
        assert!(!Number::from_f64(0.5).unwrap().is_integer());
        assert_eq!(Number::from_f64(f64::NAN), None);
        assert_eq!(Number::from_f64(i64::MIN as f64), Some(Number::from_i64(i64::MIN)));
    }

    #[test]
    fn equality_is_numeric() {
        assert_eq!(Number::from_f64(3.0).unwrap(), Number::from_u64(3));
        assert_ne!(Number::from_f64(3.5).unwrap(), Number::from_u64(3));
        assert_eq!(Number::from_f64(3.0).unwrap().to_string(), "3");
    }
}
