//! `nodb keygen` and `nodb token`: make a key, and mint tokens with it.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use nodb_auth::{Claims, Key, KeySet};

/// Write a new random signing key (HS256, a JWK) to FILE, readable only by
/// its owner. Give it to every service with --auth-key, and to whatever
/// mints tokens (`nodb token`, or your application's backend with any JWT
/// library).
#[derive(clap::Args)]
#[command(after_help = "Example:
  nodb keygen nodb-key.jwk
  nodb chronicler --auth-key nodb-key.jwk
  nodb token --key nodb-key.jwk --client alice --dispatch cart/ --read stock,orders/alice --ttl 1h

Exit status: 0 when written, 2 if FILE exists or cannot be written.")]
pub struct KeygenArgs {
    /// The file to create (never overwritten).
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

/// Print a signed token (a JWT) for one client.
#[derive(clap::Args)]
#[command(after_help = "Rights:
  --client ID        actions are numbered ID:N or ID.<anything>:N (one id per browser tab);
                     ids envoy-* need --envoy
  --dispatch P,...   action types starting with one of these prefixes (\"\" for every type);
                     none: read-only. Control actions (@@nodb/*) need --admin
  --read V,...       views: NAME, NAME/<JSON Pointer> for only that subtree, or * for all
  --log              the raw log (GET /actions) and any client's position
  --admin            everything: control actions, the raw log, metrics, every view

Examples:
  nodb token --key nodb-key.jwk --client alice --dispatch cart/ --read stock,orders/alice
  nodb token --key nodb-key.jwk --client ops --admin --ttl 10m
  curl -H \"Authorization: Bearer $(nodb token --key nodb-key.jwk --client ops --admin)\" http://127.0.0.1:7401/metrics

Exit status: 0 with the token on stdout, 2 on any error.")]
pub struct TokenArgs {
    /// The key file (`nodb keygen`); the first key in it signs.
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// The client the bearer acts as.
    #[arg(long, value_name = "ID")]
    client: String,
    /// Action type prefixes it may dispatch, comma-separated.
    #[arg(long, value_name = "PREFIX,...", value_delimiter = ',')]
    dispatch: Vec<String>,
    /// Views it may read, comma-separated: NAME, NAME/<pointer>, or *.
    #[arg(long, value_name = "VIEW,...", value_delimiter = ',')]
    read: Vec<String>,
    /// It may read the raw log.
    #[arg(long)]
    log: bool,
    /// It may do anything.
    #[arg(long)]
    admin: bool,
    /// An envoy's token (client ids envoy-* only).
    #[arg(long)]
    envoy: bool,
    /// How long it is valid: 90s, 10m, 12h, 30d, or seconds.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_ttl)]
    ttl: Duration,
}

/// Runs `nodb keygen`.
pub fn keygen(args: &KeygenArgs) -> anyhow::Result<()> {
    let key = Key::generate();
    key.write_new(&args.file)?;
    eprintln!("wrote key {:?} to {}", key.kid(), args.file.display());
    Ok(())
}

/// Runs `nodb token`.
pub fn token(args: &TokenArgs) -> anyhow::Result<()> {
    let keys = KeySet::load(&[&args.key])?;
    let key = keys.signing_key().context("the key file holds no key")?;
    let now = nodb_auth::key::now();
    let claims = Claims {
        sub: args.client.clone(),
        dispatch: args.dispatch.clone(),
        read: args.read.clone(),
        log: args.log,
        admin: args.admin,
        envoy: args.envoy,
        exp: now + args.ttl.as_secs(),
        iat: Some(now),
        nbf: None,
    };
    println!("{}", key.mint(&claims)?);
    Ok(())
}

/// A duration: a number of seconds, or a number with `s`, `m`, `h` or `d`.
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number.parse().map_err(|_| format!("{text:?} is not a duration like 90s, 10m, 12h or 30d"))?;
    let seconds = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => return Err(format!("{text:?} is not a duration like 90s, 10m, 12h or 30d")),
    };
    if seconds == 0 {
        return Err("the time to live must be at least one second".into());
    }
    Ok(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls() {
        assert_eq!(parse_ttl("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_ttl("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_ttl("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_ttl("45"), Ok(Duration::from_secs(45)));
        for bad in ["", "0", "1w", "h", "-5s", "1.5h"] {
            assert!(parse_ttl(bad).is_err(), "{bad:?}");
        }
    }
}
