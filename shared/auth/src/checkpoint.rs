//! Signed checkpoints of the log: a seq and the chain hash after it, signed
//! with the service's key, so that a checkpoint kept elsewhere can show it
//! came from the chronicler (`GET /head` answers one when keys are
//! configured; `nodb log verify --expect-signed` checks a log against it).
//!
//! A checkpoint is a JWT (HS256, the header naming the key) whose claims
//! are `{"chain_seq", "chain_hash", "iat"}`. It has no `sub` and no `exp`,
//! so it is never accepted as an access token, and an access token lacks
//! its claims, so it is never taken for a checkpoint. The keys are shared
//! secrets: a checkpoint proves it was signed by a holder of the key.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::key::{Key, KeySet, TokenError};

/// A seq of the log and the chain hash after it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The seq.
    pub chain_seq: u64,
    /// The chain hash after it, 64 hex digits.
    pub chain_hash: String,
    /// When it was signed, Unix seconds.
    pub iat: u64,
}

impl Key {
    /// Signs `checkpoint` into a token whose header names this key.
    pub fn sign_checkpoint(&self, checkpoint: &Checkpoint) -> String {
        let header = Header { kid: Some(self.kid().to_string()), ..Header::new(Algorithm::HS256) };
        // Encoding a struct of strings and numbers cannot fail.
        jsonwebtoken::encode(&header, checkpoint, &EncodingKey::from_secret(self.secret())).unwrap_or_default()
    }
}

impl KeySet {
    /// Checks a signed checkpoint's signature and reads it.
    ///
    /// # Errors
    /// Why the token is refused.
    pub fn verify_checkpoint(&self, token: &str) -> Result<Checkpoint, TokenError> {
        let key = self.key_of(token)?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        validation.required_spec_claims = Default::default();
        jsonwebtoken::decode::<Checkpoint>(token, &DecodingKey::from_secret(key.secret()), &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => TokenError::BadSignature,
                _ => TokenError::Malformed(e.to_string()),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Claims;

    #[test]
    fn a_checkpoint_verifies_with_its_key_only_and_is_no_access_token() {
        let (key, other) = (Key::generate(), Key::generate());
        let c = Checkpoint { chain_seq: 812, chain_hash: "ab".repeat(32), iat: 1 };
        let token = key.sign_checkpoint(&c);
        let keys = KeySet::new(vec![key.clone()]);
        assert_eq!(keys.verify_checkpoint(&token), Ok(c));
        assert!(KeySet::new(vec![other]).verify_checkpoint(&token).is_err());
        assert!(keys.verify(&token, 2).is_err(), "a checkpoint is not an access token");
        let access = key.mint(&Claims { sub: "u".into(), exp: 10, ..Claims::default() }).unwrap();
        assert!(keys.verify_checkpoint(&access).is_err(), "an access token is not a checkpoint");
        let mut forged = token.clone();
        forged.replace_range(forged.len() - 3.., "AAA");
        assert!(keys.verify_checkpoint(&forged).is_err());
    }
}
