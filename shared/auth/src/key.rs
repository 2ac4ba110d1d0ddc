//! Keys: a [`Key`] signs tokens and a [`KeySet`] verifies them.
//!
//! A key file holds one JWK (`{"kty": "oct", "alg": "HS256", "kid": "…",
//! "k": "<base64url secret>"}`) or a JWK set (`{"keys": [...]}`), the
//! standard format every JWT library reads. A token names its key in the
//! header's `kid`, so several keys can be accepted at once while one
//! replaces another.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::claims::{Claims, ClaimsError};

/// The fewest secret bytes a key may have (HS256 wants at least 256 bits).
pub const MIN_SECRET_BYTES: usize = 32;

/// One HS256 key with its id.
#[derive(Clone)]
pub struct Key {
    kid: String,
    secret: Vec<u8>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key").field("kid", &self.kid).finish_non_exhaustive()
    }
}

/// A key as a JWK, as key files hold it.
#[derive(Serialize, Deserialize)]
struct Jwk {
    kty: String,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default)]
    kid: Option<String>,
    k: String,
}

/// A key file's contents: one JWK or a set.
#[derive(Deserialize)]
#[serde(untagged)]
enum KeyFile {
    Set { keys: Vec<Jwk> },
    One(Jwk),
}

/// Why a key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file cannot be read or written.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a JWK or JWK set of HS256 keys.
    #[error("key file {path}: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// Why a token is refused (an HTTP 401).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a JWT, or not one of ours (wrong algorithm, bad claims JSON).
    #[error("the token is malformed: {0}")]
    Malformed(String),
    /// Its `kid` is not a key this service accepts.
    #[error("the token is signed with key {0:?}, which this service does not accept")]
    UnknownKey(String),
    /// The signature does not match.
    #[error("the token's signature does not match")]
    BadSignature,
    /// It has expired.
    #[error("the token has expired")]
    Expired,
    /// It is not valid yet (`nbf`).
    #[error("the token is not valid yet")]
    NotYetValid,
    /// Signed, but its claims make no sense.
    #[error("the token's claims are invalid: {0}")]
    Claims(#[from] ClaimsError),
}

impl Key {
    /// A new random 256-bit key with a random id.
    ///
    /// # Panics
    /// If the system's random source fails.
    pub fn generate() -> Key {
        let mut secret = vec![0u8; MIN_SECRET_BYTES];
        let mut id = [0u8; 6];
        aws_lc_rs::rand::fill(&mut secret).expect("the system random source failed");
        aws_lc_rs::rand::fill(&mut id).expect("the system random source failed");
        Key { kid: URL_SAFE_NO_PAD.encode(id), secret }
    }

    /// A key from its id and secret bytes (at least 32).
    ///
    /// # Errors
    /// A secret shorter than [`MIN_SECRET_BYTES`].
    pub fn from_secret(kid: impl Into<String>, secret: &[u8]) -> Result<Key, String> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(format!("an HS256 secret needs at least {MIN_SECRET_BYTES} bytes, not {}", secret.len()));
        }
        Ok(Key { kid: kid.into(), secret: secret.to_vec() })
    }

    /// The key's id, the `kid` of the tokens it signs.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The key as a JWK, the form a key file holds.
    pub fn to_jwk(&self) -> String {
        let jwk = Jwk {
            kty: "oct".into(),
            alg: Some("HS256".into()),
            kid: Some(self.kid.clone()),
            k: URL_SAFE_NO_PAD.encode(&self.secret),
        };
        serde_json::to_string_pretty(&jwk).unwrap_or_default()
    }

    /// Writes the key to a new file that only its owner can read (mode
    /// 0600); an existing file is never overwritten.
    ///
    /// # Errors
    /// The file exists or cannot be written.
    pub fn write_new(&self, path: &Path) -> Result<(), KeyError> {
        use std::io::Write as _;
        let io = |source| KeyError::Io { path: path.display().to_string(), source };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(io)?;
        file.write_all(format!("{}\n", self.to_jwk()).as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)
    }

    /// The shared secret.
    pub(crate) fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// Signs `claims` into a token whose header names this key.
    ///
    /// # Errors
    /// Claims that [`Claims::validate`] refuses.
    pub fn mint(&self, claims: &Claims) -> Result<String, ClaimsError> {
        claims.validate()?;
        let header = Header { kid: Some(self.kid.clone()), ..Header::new(Algorithm::HS256) };
        // Encoding a struct of strings, numbers and booleans cannot fail.
        Ok(jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(&self.secret)).unwrap_or_default())
    }
}

/// The keys a service accepts.
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    keys: Vec<Key>,
}

impl KeySet {
    /// A set of these keys.
    pub fn new(keys: Vec<Key>) -> KeySet {
        KeySet { keys }
    }

    /// Reads keys from files, each a JWK or a JWK set.
    ///
    /// # Errors
    /// A file that cannot be read, holds no HS256 key, or repeats a key id.
    pub fn load(paths: &[impl AsRef<Path>]) -> Result<KeySet, KeyError> {
        let mut keys: Vec<Key> = Vec::new();
        for path in paths {
            let path = path.as_ref();
            let name = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io { path: name.clone(), source })?;
            let invalid = |reason: String| KeyError::Invalid { path: name.clone(), reason };
            let jwks = match serde_json::from_str::<KeyFile>(&text) {
                Ok(KeyFile::Set { keys }) => keys,
                Ok(KeyFile::One(jwk)) => vec![jwk],
                Err(e) => return Err(invalid(format!("not a JWK or a JWK set ({e})"))),
            };
            if jwks.is_empty() {
                return Err(invalid("the key set is empty".into()));
            }
            for jwk in jwks {
                if jwk.kty != "oct" || jwk.alg.as_deref().is_some_and(|a| a != "HS256") {
                    return Err(invalid(format!(
                        "only HS256 keys (kty \"oct\") are supported, not kty {:?} alg {:?}",
                        jwk.kty, jwk.alg
                    )));
                }
                let secret =
                    URL_SAFE_NO_PAD.decode(jwk.k.trim_end_matches('=')).map_err(|e| invalid(format!("`k`: {e}")))?;
                let kid = jwk.kid.unwrap_or_default();
                if keys.iter().any(|k| k.kid == kid) {
                    return Err(invalid(format!("key id {kid:?} appears twice")));
                }
                keys.push(Key::from_secret(kid, &secret).map_err(invalid)?);
            }
        }
        Ok(KeySet { keys })
    }

    /// The key an HS256 token's header names (or the only key).
    pub(crate) fn key_of(&self, token: &str) -> Result<&Key, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
        if header.alg != Algorithm::HS256 {
            return Err(TokenError::Malformed(format!("the algorithm must be HS256, not {:?}", header.alg)));
        }
        match &header.kid {
            Some(kid) => self.keys.iter().find(|k| &k.kid == kid).ok_or_else(|| TokenError::UnknownKey(kid.clone())),
            None if self.keys.len() == 1 => Ok(&self.keys[0]),
            None => Err(TokenError::Malformed("the token names no key (`kid`)".into())),
        }
    }

    /// The first key, the one that signs.
    pub fn signing_key(&self) -> Option<&Key> {
        self.keys.first()
    }

    /// Checks a token's signature, expiry and claims, `now` being the
    /// current Unix time in seconds.
    ///
    /// # Errors
    /// Why the token is refused.
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        let key = self.key_of(token)?;
        // Times are checked here against `now`, to the second, so tests
        // and the stream's expiry agree with the check.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        validation.required_spec_claims = ["exp", "sub"].iter().map(|s| (*s).to_string()).collect();
        let data = jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(&key.secret), &validation).map_err(
            |e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => TokenError::BadSignature,
                _ => TokenError::Malformed(e.to_string()),
            },
        )?;
        let claims = data.claims;
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        if claims.nbf.is_some_and(|nbf| nbf > now) {
            return Err(TokenError::NotYetValid);
        }
        claims.validate()?;
        Ok(claims)
    }
}

/// The current Unix time in seconds.
pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn claims(sub: &str, exp: u64) -> Claims {
        Claims { sub: sub.into(), exp, ..Claims::default() }
    }

    #[test]
    fn a_minted_token_verifies_with_its_key_only() {
        let (a, b) = (Key::generate(), Key::generate());
        let token = a.mint(&claims("alice", 2_000)).unwrap();
        assert_eq!(KeySet::new(vec![a.clone()]).verify(&token, 1_000).unwrap(), claims("alice", 2_000));
        assert_eq!(KeySet::new(vec![b.clone(), a.clone()]).verify(&token, 1_000).unwrap().sub, "alice");
        assert_eq!(KeySet::new(vec![b.clone()]).verify(&token, 1_000), Err(TokenError::UnknownKey(a.kid.clone())));
        // Same id, other secret: the signature fails.
        let forged = Key { kid: a.kid.clone(), secret: b.secret.clone() };
        assert_eq!(KeySet::new(vec![forged]).verify(&token, 1_000), Err(TokenError::BadSignature));
    }

    #[test]
    fn expiry_and_not_before_are_checked_to_the_second() {
        let k = Key::generate();
        let set = KeySet::new(vec![k.clone()]);
        let token = k.mint(&claims("alice", 2_000)).unwrap();
        assert!(set.verify(&token, 1_999).is_ok());
        assert_eq!(set.verify(&token, 2_000), Err(TokenError::Expired));
        let later = k.mint(&Claims { nbf: Some(1_500), ..claims("alice", 2_000) }).unwrap();
        assert_eq!(set.verify(&later, 1_499), Err(TokenError::NotYetValid));
        assert!(set.verify(&later, 1_500).is_ok());
    }

    #[test]
    fn other_algorithms_and_unsigned_tokens_are_refused() {
        let k = Key::generate();
        let set = KeySet::new(vec![k.clone()]);
        let token = k.mint(&claims("alice", 2_000)).unwrap();
        let (_, rest) = token.split_once('.').unwrap();
        let none = format!("{}.{rest}", URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#));
        assert!(matches!(set.verify(&none, 1_000), Err(TokenError::Malformed(_))));
        let unsigned = token.rsplit_once('.').unwrap().0.to_string() + ".";
        assert!(set.verify(&unsigned, 1_000).is_err());
        assert!(matches!(set.verify("nonsense", 1_000), Err(TokenError::Malformed(_))));
    }

    #[test]
    fn key_files_hold_one_jwk_or_a_set_and_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (Key::generate(), Key::generate());
        a.write_new(&dir.path().join("a.jwk")).unwrap();
        assert!(a.write_new(&dir.path().join("a.jwk")).is_err(), "never overwrites");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join("a.jwk")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let set = format!(r#"{{"keys": [{}]}}"#, b.to_jwk());
        std::fs::write(dir.path().join("set.json"), set).unwrap();
        let keys = KeySet::load(&[dir.path().join("a.jwk"), dir.path().join("set.json")]).unwrap();
        assert_eq!(keys.signing_key().unwrap().kid(), a.kid());
        let token = b.mint(&claims("bob", 2_000)).unwrap();
        assert_eq!(keys.verify(&token, 1).unwrap().sub, "bob");
        std::fs::write(dir.path().join("rsa.json"), r#"{"kty":"RSA","k":"x"}"#).unwrap();
        assert!(KeySet::load(&[dir.path().join("rsa.json")]).is_err());
        std::fs::write(dir.path().join("short.json"), r#"{"kty":"oct","k":"c2hvcnQ"}"#).unwrap();
        assert!(KeySet::load(&[dir.path().join("short.json")]).is_err());
    }

    fn arb_claims() -> impl Strategy<Value = Claims> {
        (
            "[a-z][a-z0-9_.-]{0,20}",
            proptest::collection::vec("[a-z/]{0,8}", 0..4),
            proptest::collection::vec(
                prop_oneof![Just("*".to_string()), "[a-z]{1,6}", "[a-z]{1,6}/[a-z0-9]{1,6}"],
                0..4,
            ),
            any::<bool>(),
            any::<bool>(),
            1u64..u64::from(u32::MAX),
            proptest::option::of(0u64..1_000_000),
        )
            .prop_map(|(sub, dispatch, read, log, admin, exp, iat)| Claims {
                sub,
                dispatch,
                read,
                log,
                admin,
                envoy: false,
                exp,
                iat,
                nbf: None,
            })
            .prop_filter("valid claims", |c| c.validate().is_ok())
    }

    proptest! {
        /// Whatever the claims, a token carries them exactly, and any
        /// change to its text is refused (or, for the rare byte that
        /// base64 ignores, still yields the same claims), never a panic.
        #[test]
        fn tokens_round_trip_and_tampering_is_refused(c in arb_claims(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let k = Key::generate();
            let set = KeySet::new(vec![k.clone()]);
            let token = k.mint(&c).unwrap();
            let now = c.exp - 1;
            prop_assert_eq!(set.verify(&token, now).unwrap(), c.clone());
            let mut bytes = token.clone().into_bytes();
            let i = at.index(bytes.len());
            prop_assume!(bytes[i] != byte);
            bytes[i] = byte;
            let tampered = String::from_utf8_lossy(&bytes).into_owned();
            if let Ok(got) = set.verify(&tampered, now) {
                prop_assert_eq!(got, c);
            }
        }

        /// Any string at all is refused without a panic.
        #[test]
        fn garbage_is_refused(s in ".{0,200}") {
            let set = KeySet::new(vec![Key::generate()]);
            prop_assert!(set.verify(&s, 1).is_err());
        }
    }
}
