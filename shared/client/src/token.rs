//! Where a client's access token comes from: [`TokenSource`]. A service
//! with keys wants one on every request (`Authorization: Bearer …`); the
//! source is asked again for each request and each connection, so a token
//! file rewritten by a renewal job, or a source that mints a fresh token,
//! keeps a long-running follower going past any one token's expiry.

use std::path::PathBuf;
use std::sync::Arc;

/// Where tokens come from.
#[derive(Clone)]
pub enum TokenSource {
    /// This token, always.
    Fixed(String),
    /// The contents of this file (trimmed), read anew each time.
    File(PathBuf),
    /// A token made on demand (e.g. minted with a key this process holds).
    Mint(Arc<dyn Fn() -> String + Send + Sync>),
}

/// The token file cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot read the token file {path}: {reason}")]
pub struct TokenFileError {
    /// The file.
    pub path: String,
    /// Why.
    pub reason: String,
}

impl TokenSource {
    /// The token to send now.
    ///
    /// # Errors
    /// A token file that cannot be read or is empty.
    pub fn token(&self) -> Result<String, TokenFileError> {
        match self {
            TokenSource::Fixed(t) => Ok(t.clone()),
            TokenSource::Mint(mint) => Ok(mint()),
            TokenSource::File(path) => {
                let error = |reason: String| TokenFileError { path: path.display().to_string(), reason };
                let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
                let token = text.trim();
                if token.is_empty() { Err(error("the file is empty".into())) } else { Ok(token.to_string()) }
            }
        }
    }
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token itself.
        match self {
            TokenSource::Fixed(_) => f.write_str("TokenSource::Fixed(…)"),
            TokenSource::File(p) => write!(f, "TokenSource::File({})", p.display()),
            TokenSource::Mint(_) => f.write_str("TokenSource::Mint(…)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_file_is_read_each_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let source = TokenSource::File(path.clone());
        assert!(source.token().is_err());
        std::fs::write(&path, "one\n").unwrap();
        assert_eq!(source.token().unwrap(), "one");
        std::fs::write(&path, "two").unwrap();
        assert_eq!(source.token().unwrap(), "two");
        assert!(!format!("{:?}", TokenSource::Fixed("secret".into())).contains("secret"));
    }
}
