//! The options every service takes for who may reach it — tokens, allowed
//! origins, TLS — and the rule that a service beyond loopback needs tokens
//! unless told `--insecure-open`; and the token option of the services
//! that follow another one.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use nodb_auth::KeySet;
use nodb_server::{Access, Tls};

/// Access and TLS options of a service.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Guard {
    /// Require a token on every request but /health and the static files,
    /// signed with a key in FILE (a JWK or a JWK set, as `nodb keygen`
    /// writes). Repeat to accept several files' keys while one replaces
    /// another; tokens name their key (`kid`).
    #[arg(long = "auth-key", value_name = "FILE", global = true)]
    pub auth_keys: Vec<PathBuf>,
    /// Serve without tokens even on an address beyond loopback: anyone who
    /// can reach the service may do anything.
    #[arg(long, global = true)]
    pub insecure_open: bool,
    /// Also accept browser requests and WebSockets from pages of ORIGIN
    /// (scheme://host[:port], or * for any page); repeat for several. By
    /// default only the service's own origin.
    #[arg(long = "allow-origin", value_name = "ORIGIN", global = true)]
    pub allow_origins: Vec<String>,
    /// Serve HTTPS (and WSS) with this PEM certificate chain; needs
    /// --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key", global = true)]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert", global = true)]
    pub tls_key: Option<PathBuf>,
}

/// What a service guards itself with.
pub struct Guarded {
    /// The access check.
    pub access: Access,
    /// TLS, if asked for.
    pub tls: Option<Tls>,
    /// The keys, for a process that also mints tokens for its own parts
    /// (`nodb up`).
    pub keys: Option<KeySet>,
}

impl Guard {
    /// Loads the keys and certificate and checks the rule for `listen`.
    ///
    /// # Errors
    /// A key or certificate file that cannot be used, a bad origin, or an
    /// open service beyond loopback without `--insecure-open`.
    pub fn load(&self, listen: SocketAddr) -> anyhow::Result<Guarded> {
        let keys = if self.auth_keys.is_empty() { None } else { Some(KeySet::load(&self.auth_keys)?) };
        if keys.is_none() && !listen.ip().is_loopback() && !self.insecure_open {
            anyhow::bail!(
                "refusing to listen on {listen} without tokens: anyone who can reach it could do anything. \
                 Give --auth-key FILE (make one with `nodb keygen FILE`), listen on 127.0.0.1, \
                 or pass --insecure-open"
            );
        }
        if keys.is_none() && self.allow_origins.iter().any(|o| o == "*") && !self.insecure_open {
            anyhow::bail!(
                "refusing --allow-origin '*' without tokens: every web page the user visits could then use this \
                 service. Give --auth-key FILE, name the origins, or pass --insecure-open"
            );
        }
        let access = Access::new(keys.clone())
            .allow_origins(&self.allow_origins)
            .map_err(anyhow::Error::msg)?
            .loopback_only(listen.ip().is_loopback());
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(Tls::load(cert, key)?),
            _ => None,
        };
        Ok(Guarded { access, tls, keys })
    }
}

/// The token option of a service that reads or writes another service.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TokenFile {
    /// Send the token in FILE to the services this one follows or
    /// dispatches to (when they require tokens). The file is read again
    /// for every connection, so a renewal job can rewrite it.
    #[arg(long, value_name = "FILE", global = true)]
    pub token_file: Option<PathBuf>,
}

impl TokenFile {
    /// The token source, after checking the file can be read now.
    ///
    /// # Errors
    /// A file that cannot be read or is empty.
    pub fn source(&self) -> anyhow::Result<Option<nodb_client::TokenSource>> {
        let Some(path) = &self.token_file else { return Ok(None) };
        let source = nodb_client::TokenSource::File(path.clone());
        source.token().context("--token-file")?;
        Ok(Some(source))
    }
}

/// Mints the tokens a process gives its own parts (`nodb up`'s data view,
/// envoys and cascades), each with only the rights that part needs.
#[derive(Clone)]
pub struct Minter {
    key: Option<nodb_auth::Key>,
}

/// How long a token minted for a part lives; a fresh one is minted for
/// each connection.
const PART_TOKEN_TTL: u64 = 3600;

impl Minter {
    /// Minting with the signing key of `keys` (none: no tokens).
    pub fn new(keys: Option<&KeySet>) -> Minter {
        Minter { key: keys.and_then(KeySet::signing_key).cloned() }
    }

    /// A source of fresh tokens with `claims` (their `exp` set at each
    /// mint); `None` without a key.
    pub fn source(&self, claims: nodb_auth::Claims) -> Option<nodb_client::TokenSource> {
        let key = self.key.clone()?;
        claims.validate().ok()?;
        Some(nodb_client::TokenSource::Mint(std::sync::Arc::new(move || {
            let now = nodb_auth::key::now();
            let c = nodb_auth::Claims { exp: now + PART_TOKEN_TTL, iat: Some(now), ..claims.clone() };
            key.mint(&c).unwrap_or_default()
        })))
    }

    /// One token with `claims`, valid for `ttl` seconds; `None` without a
    /// key.
    pub fn once(&self, claims: nodb_auth::Claims, ttl: u64) -> Option<String> {
        let now = nodb_auth::key::now();
        self.key.as_ref()?.mint(&nodb_auth::Claims { exp: now + ttl, iat: Some(now), ..claims }).ok()
    }
}
