//! Access control in the benchmarks: `--auth off|on|compare` for `ingest`
//! and `views`, a signing key made in this process, the tokens each load
//! client needs, and `nodb-bench token`, the cost of one token check.
//!
//! With `compare`, one run starts the services twice — open, and with
//! `--auth-key` — and measures them back to back, alternating which goes
//! first, so that drift on a shared machine falls on both sides alike.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::bail;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nodb_auth::{Claims, Grant, Key, KeySet};

/// Whether the services measured check tokens.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AuthMode {
    /// Open services, no tokens (as before access control).
    #[default]
    Off,
    /// Every service started with `--auth-key`; every client sends a token.
    On,
    /// Both, side by side in one run, with the ratio on / off.
    Compare,
}

impl AuthMode {
    /// The settings to measure, in the order of the first round.
    pub fn sides(self) -> &'static [Side] {
        match self {
            AuthMode::Off => &[Side::Open],
            AuthMode::On => &[Side::Auth],
            AuthMode::Compare => &[Side::Open, Side::Auth],
        }
    }
}

/// One side of a comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// No keys, no tokens; the default limits.
    Open,
    /// Keys and tokens; the default limits.
    Auth,
    /// No keys, no tokens, and the limits off
    /// ([`NO_LIMITS`](crate::limits::NO_LIMITS)).
    NoLimits,
}

impl Side {
    /// A suffix for row names: empty when open.
    pub fn suffix(self) -> &'static str {
        match self {
            Side::Open => "",
            Side::Auth => " +auth",
            Side::NoLimits => " -limits",
        }
    }

    /// `"auth off, limits on"`, `"auth on"` or `"limits off"`.
    pub fn label(self) -> &'static str {
        match self {
            Side::Open => "auth off, limits on",
            Side::Auth => "auth on",
            Side::NoLimits => "limits off",
        }
    }
}

/// The sides in round `round`: the given order in even rounds, reversed in
/// odd ones, so neither side always runs first.
pub fn round_order(sides: &[Side], round: usize) -> Vec<Side> {
    let mut order = sides.to_vec();
    if round % 2 == 1 {
        order.reverse();
    }
    order
}

/// The signing key of a run, also written to a key file for `--auth-key`.
pub struct BenchKey {
    key: Key,
    file: PathBuf,
}

/// How long the benchmark's tokens live: longer than any run.
const TOKEN_TTL: u64 = 6 * 3600;

impl BenchKey {
    /// A new key, written to `dir/bench-key.jwk`.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn new(dir: &Path) -> anyhow::Result<BenchKey> {
        let key = Key::generate();
        let file = dir.join("bench-key.jwk");
        key.write_new(&file)?;
        Ok(BenchKey { key, file })
    }

    /// The key file, for `--auth-key`.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// A token for `claims`, its expiry set from now.
    ///
    /// # Errors
    /// Claims the key refuses to sign.
    pub fn mint(&self, claims: Claims) -> anyhow::Result<String> {
        let exp = nodb_auth::key::now() + TOKEN_TTL;
        Ok(self.key.mint(&Claims { exp, ..claims })?)
    }

    /// A token for `client` that may dispatch types starting with `prefix`.
    ///
    /// # Errors
    /// A client id a token cannot name.
    pub fn dispatcher(&self, client: &str, prefix: &str) -> anyhow::Result<String> {
        self.mint(Claims { sub: client.into(), dispatch: vec![prefix.into()], ..Claims::default() })
    }

    /// A read-only token for view `view`.
    ///
    /// # Errors
    /// A client id or view a token cannot name.
    pub fn reader(&self, client: &str, view: &str) -> anyhow::Result<String> {
        self.mint(Claims { sub: client.into(), read: vec![view.into()], ..Claims::default() })
    }

    /// A token that reads the raw log, for a data view's `--token-file`,
    /// written to `dir/NAME.token`.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn log_reader_file(&self, dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
        let token = self.mint(Claims { sub: name.into(), log: true, ..Claims::default() })?;
        let path = dir.join(format!("{name}.token"));
        std::fs::write(&path, token)?;
        Ok(path)
    }
}

/// The cost of one token check: `KeySet::verify`, the service's
/// `Access::grant`, and the rights checks after it, timed in this process;
/// then what it costs a whole HTTP request to a chronicler.
#[derive(clap::Args)]
#[command(after_help = "Example:
  cargo build --release -p nodb -p nodb-bench && target/release/nodb-bench token

Then it loads an open chronicler and one with --auth-key over HTTP and compares requests/s and the
server's CPU per request with and without a token. It also times the parts of a check (the header, the HMAC alone, the claims JSON) to show where
the time goes. Compare ratios, not absolute numbers: the machine is shared and times drift.")]
pub struct TokenArgs {
    /// Checks per timed batch.
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    checks: u32,
    /// Timed batches per measurement; the median batch is reported.
    #[arg(long, value_name = "N", default_value_t = 15)]
    batches: u32,
    /// Seconds per side and round of the HTTP probe (0: skip it).
    #[arg(long, value_name = "SECONDS", default_value_t = 2.0)]
    http_seconds: f64,
    /// Rounds of the HTTP probe, each side back to back, alternating.
    #[arg(long, value_name = "N", default_value_t = 3)]
    rounds: usize,
    /// Where to put the probe's chroniclers (a temporary folder inside it).
    #[arg(long, value_name = "DIR", default_value = ".")]
    dir: PathBuf,
}

/// The median and the fastest of `batches` runs of `f` `n` times, per call
/// (on a busy machine the fastest is the closer to the cost itself).
fn time_per_op(n: u32, batches: u32, mut f: impl FnMut()) -> (Duration, Duration) {
    for _ in 0..n / 10 + 1 {
        f();
    }
    let mut samples: Vec<Duration> = (0..batches)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n {
                f();
            }
            t.elapsed() / n
        })
        .collect();
    samples.sort();
    (samples[samples.len() / 2], samples[0])
}

fn print_op(name: &str, (median, fastest): (Duration, Duration)) {
    let (ns, min) = (median.as_nanos(), fastest.as_nanos());
    println!("{name:<64} {ns:>8} ns/op (fastest batch {min:>6}) {:>11.0} /s", 1e9 / ns.max(1) as f64);
}

/// Runs `nodb-bench token`.
///
/// # Errors
/// Bad arguments, or a token that does not verify.
pub async fn token(args: &TokenArgs) -> anyhow::Result<()> {
    if args.checks == 0 || args.batches == 0 || args.rounds == 0 || args.http_seconds.is_nan() {
        bail!("--checks, --batches and --rounds must be positive");
    }
    in_process(args)?;
    if args.http_seconds > 0.0 {
        http_probe(args).await?;
    }
    Ok(())
}

/// The check and its parts, timed in this process.
fn in_process(args: &TokenArgs) -> anyhow::Result<()> {
    let (n, b) = (args.checks, args.batches);
    let key = Key::generate();
    let keys = KeySet::new(vec![key.clone()]);
    let exp = nodb_auth::key::now() + TOKEN_TTL;
    // The tokens the benchmarks' clients carry: a dispatcher (ingest), a
    // view reader, and a larger one with several rights.
    let dispatcher = Claims { sub: "bench1-0".into(), dispatch: vec!["bench/".into()], exp, ..Claims::default() };
    let reader = Claims { sub: "reader".into(), read: vec!["stock".into()], exp, ..Claims::default() };
    let rich = Claims {
        sub: "alice".into(),
        dispatch: vec!["cart/".into(), "orders/".into(), "stock/sold".into()],
        read: vec!["stock".into(), "orders/alice".into(), "sales".into()],
        log: true,
        exp,
        iat: Some(exp - TOKEN_TTL),
        ..Claims::default()
    };
    let access = nodb_server::Access::new(Some(keys.clone()));
    let open = nodb_server::Access::open();
    println!("{n} checks per batch, median of {b} batches (and the fastest)\n");

    for (name, claims) in [("dispatcher", &dispatcher), ("reader", &reader), ("several rights", &rich)] {
        let token = key.mint(claims)?;
        if keys.verify(&token, exp - 1)? != *claims {
            bail!("the {name} token did not verify to its claims");
        }
        println!("{name} token, {} bytes:", token.len());
        print_op(
            "  KeySet::verify",
            time_per_op(n, b, || {
                let _ = black_box(keys.verify(black_box(&token), exp - 1));
            }),
        );
        print_op(
            "  Access::grant (a token verified before: what each later request pays)",
            time_per_op(n, b, || {
                let _ = black_box(access.grant(Some(black_box(&token))));
            }),
        );
    }

    let token = key.mint(&dispatcher)?;
    println!("\nthe parts of a check (dispatcher token):");
    print_op(
        "  jsonwebtoken::decode_header",
        time_per_op(n, b, || {
            let _ = black_box(jsonwebtoken::decode_header(black_box(&token)));
        }),
    );
    let secret = key_secret(&key)?;
    let (message, signature) = token.rsplit_once('.').unwrap_or_default();
    let signature = URL_SAFE_NO_PAD.decode(signature)?;
    let hmac = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &secret);
    print_op(
        "  HMAC-SHA256 verify alone (aws-lc-rs, key prepared once)",
        time_per_op(n, b, || {
            let _ = black_box(aws_lc_rs::hmac::verify(&hmac, black_box(message.as_bytes()), &signature));
        }),
    );
    print_op(
        "  HMAC-SHA256 verify, key prepared per check",
        time_per_op(n, b, || {
            let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, black_box(&secret));
            let _ = black_box(aws_lc_rs::hmac::verify(&k, black_box(message.as_bytes()), &signature));
        }),
    );
    let payload = URL_SAFE_NO_PAD.decode(message.split_once('.').map(|p| p.1).unwrap_or_default())?;
    print_op(
        "  claims JSON -> Claims (serde_json)",
        time_per_op(n, b, || {
            let _ = black_box(serde_json::from_slice::<Claims>(black_box(&payload)));
        }),
    );
    print_op(
        "  jsonwebtoken::Validation::new + required claims set",
        time_per_op(n, b, || {
            let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
            v.required_spec_claims = ["exp", "sub"].iter().map(|s| (*s).to_string()).collect();
            black_box(v);
        }),
    );
    let claims = keys.verify(&token, exp - 1)?;
    print_op(
        "  Claims::validate",
        time_per_op(n, b, || {
            let _ = black_box(black_box(&claims).validate());
        }),
    );

    println!("\nafter the check (per dispatch on a socket, per view request):");
    let grant = Grant::token(claims);
    print_op(
        "  Grant::may_dispatch (own client, allowed type)",
        time_per_op(n, b, || {
            let _ = black_box(grant.may_dispatch(black_box("bench1-0"), black_box("bench/tick")));
        }),
    );
    let reading = Grant::token(keys.verify(&key.mint(&rich)?, exp - 1)?);
    print_op(
        "  Grant::may_read (subtree scope, 3 read entries)",
        time_per_op(n, b, || {
            let _ = black_box(reading.may_read(black_box("orders")));
        }),
    );
    print_op(
        "  Access::grant on an open service",
        time_per_op(n, b, || {
            let _ = black_box(open.grant(None));
        }),
    );
    print_op(
        "  Key::mint (dispatcher token)",
        time_per_op(n / 4 + 1, b, || {
            let _ = black_box(key.mint(black_box(&dispatcher)));
        }),
    );
    Ok(())
}

/// The secret of `key`, read back from its JWK (the key hides it).
fn key_secret(key: &Key) -> anyhow::Result<Vec<u8>> {
    let jwk: serde_json::Value = serde_json::from_str(&key.to_jwk())?;
    Ok(URL_SAFE_NO_PAD.decode(jwk["k"].as_str().unwrap_or_default())?)
}

/// What the token check costs a whole request: keep-alive `GET`s at an
/// open chronicler and one with `--auth-key`, back to back, giving
/// requests per second and the server's CPU per request.
///
/// Two pairs: `GET /clients/bench` (a route that needs a token when the
/// chronicler has keys: the open one without, the other with), and
/// `GET /health` on the chronicler with keys, without and with a token
/// (the middleware verifies any token it is given, even on a public
/// route): the same server, the only difference the check.
async fn http_probe(args: &TokenArgs) -> anyhow::Result<()> {
    let tmp = tempfile::Builder::new().prefix("nodb-bench-").tempdir_in(&args.dir)?;
    let key = BenchKey::new(tmp.path())?;
    let (open, open_addr) = super::start_chronicler_at(&tmp.path().join("open"), None, &[])?;
    let (auth, auth_addr) = super::start_chronicler_at(&tmp.path().join("auth"), Some(&key), &[])?;
    let token = key.dispatcher("bench", "bench/")?;
    let seconds = Duration::from_secs_f64(args.http_seconds);
    let connections = 4;
    println!(
        "\nover HTTP ({connections} keep-alive connections, one request in flight each, {} s per side, {} rounds):",
        args.http_seconds, args.rounds
    );
    println!("{:<52} {:>10} {:>16}", "", "requests/s", "server CPU/req");
    let probes = [
        (
            "GET /clients/bench",
            (open.pid(), open_addr.as_str(), None),
            (auth.pid(), auth_addr.as_str(), Some(token.as_str())),
        ),
        ("GET /health", (auth.pid(), auth_addr.as_str(), None), (auth.pid(), auth_addr.as_str(), Some(token.as_str()))),
    ];
    for (path, off, on) in probes {
        let uri = path.trim_start_matches("GET ");
        let mut ratios: Vec<(f64, f64)> = Vec::new();
        for round in 0..args.rounds {
            let mut got = [(0.0, 0.0); 2];
            for side in round_order(&[Side::Open, Side::Auth], round) {
                let (pid, addr, token) = if side == Side::Open { off } else { on };
                let (rate, cpu) = get_load(addr, uri, token, connections, seconds, pid).await?;
                let label = format!("  {path} {}", if token.is_some() { "with a token" } else { "without a token" });
                let label =
                    if path.contains("clients") && side == Side::Open { format!("{label} (open)") } else { label };
                println!("{label:<52} {rate:>10.0} {:>13.2} µs", cpu * 1e6);
                got[usize::from(side == Side::Auth)] = (rate, cpu);
            }
            ratios.push((got[1].0 / got[0].0, got[1].1 / got[0].1));
        }
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let rate = median(ratios.iter().map(|r| r.0).collect());
        let cpu = median(ratios.iter().map(|r| r.1).collect());
        println!(
            "  {path}: with a token / without, median of {} rounds: {rate:.3}x requests/s, {cpu:.3}x server CPU per request",
            args.rounds
        );
    }
    Ok(())
}

/// `connections` keep-alive connections sending `GET uri` for `seconds`:
/// requests per second and the server's CPU seconds per request.
async fn get_load(
    addr: &str,
    uri: &str,
    token: Option<&str>,
    connections: usize,
    seconds: Duration,
    pid: u32,
) -> anyhow::Result<(f64, f64)> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let authorization = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let request = format!("GET {uri} HTTP/1.1\r\nHost: {addr}\r\n{authorization}\r\n");
    let from = Instant::now() + Duration::from_millis(300);
    let stop = from + seconds;
    let cpu = super::cpu::during(pid, from, stop);
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let (addr, request) = (addr.to_string(), request.clone());
            tokio::spawn(async move {
                let tcp = tokio::net::TcpStream::connect(&addr).await?;
                tcp.set_nodelay(true)?;
                let (r, mut w) = tcp.into_split();
                let mut reader = BufReader::new(r);
                let mut line = String::new();
                let mut done = 0u64;
                while Instant::now() < stop {
                    w.write_all(request.as_bytes()).await?;
                    let (mut length, mut ok) = (0usize, false);
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).await? == 0 {
                            bail!("the chronicler closed the connection");
                        }
                        let l = line.trim_end();
                        if l.is_empty() {
                            break;
                        }
                        if l.starts_with("HTTP/1.1 ") {
                            // 404: no actions from that client yet, after
                            // the check, which is what is measured.
                            ok = l.starts_with("HTTP/1.1 200") || l.starts_with("HTTP/1.1 404");
                        } else if let Some((_, v)) =
                            l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                        {
                            length = v.trim().parse()?;
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).await?;
                    if !ok {
                        bail!("GET {} answered {}", "probe", String::from_utf8_lossy(&body));
                    }
                    let now = Instant::now();
                    if now >= from && now < stop {
                        done += 1;
                    }
                }
                anyhow::Ok(done)
            })
        })
        .collect();
    let mut requests = 0;
    for t in tasks {
        requests += t.await??;
    }
    let cpu = cpu.await?.map_or(f64::NAN, |c| c.as_secs_f64());
    Ok((requests as f64 / seconds.as_secs_f64(), cpu / requests.max(1) as f64))
}
