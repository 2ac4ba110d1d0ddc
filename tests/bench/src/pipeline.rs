//! `nodb-bench pipeline`: whether a data view keeps pace with the
//! chronicler at full ingest.
//!
//! A chronicler (its dispatch rate limits off, where the binary has them)
//! and the warehouse data view following it run as their own processes on
//! loopback, each measurement with a fresh data directory. This process
//! seeds --products products with `stock/corrected` (a billion on the
//! shelf each, so no sale is ever refused), waits for the view to reach
//! them, then starts the clock and posts --actions `stock/sold` actions as
//! fast as the chronicler acknowledges them: HTTP batches (the fastest
//! transport in `nodb-bench ingest`) from --clients clients, one request
//! in flight each. Meanwhile a task asks the data view's `GET /health` for
//! its seq every --poll-ms and records the lag behind the highest seq
//! acknowledged so far. It reports the ingest time (to the last ack), the
//! time the view took to reach the last acknowledged seq, their ratio, the
//! peak lag, and both rates; with several `--nodb` binaries, the ratios
//! between them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::cpu::cpu_time;
use super::history::wait_for_seq;
use super::limits::NO_LIMITS;
use super::stats::fmt_duration;
use super::views::start_dataview_bin;
use super::{nodb_bin, start_chronicler_bin};

/// Ingest against the data view: does the view keep pace with the
/// chronicler at full ingest?
///
/// Starts `nodb chronicler` (with its dispatch rate limits off) and
/// `nodb dataview --app warehouse` following it, each measurement with a
/// fresh data directory; seeds --products products, then posts --actions
/// sales in HTTP batches of --batch from --clients clients as fast as they
/// are acknowledged, while polling the view's `GET /health` every
/// --poll-ms. Reports, per binary and round: the ingest time (first post
/// to last ack) and actions/s, the view time (first post until the view's
/// seq reached the last acknowledged seq) and actions/s, the ratio view /
/// ingest (target <= 1.25), the peak lag (highest acknowledged seq minus
/// the view's seq, at the polls), each process's CPU per action, and the
/// share of the actions the view applied in catch-up batches.
///
/// With --nodb given more than once, measures each binary in every round,
/// alternating which goes first, and prints the ratios between them.
#[derive(clap::Args)]
#[command(after_help = "Example:
  cargo build --release -p nodb -p nodb-bench && target/release/nodb-bench pipeline
  target/release/nodb-bench pipeline --nodb /tmp/old/nodb --nodb target/release/nodb --rounds 3

Target: view time / ingest time <= 1.25. The view's time is known to within
one poll (--poll-ms). Compare ratios, not absolute numbers: the machine is
shared and times drift.")]
pub struct PipelineArgs {
    /// Where to put the data directories (a temporary folder inside it).
    #[arg(long, value_name = "DIR", default_value = ".")]
    dir: PathBuf,
    /// A `nodb` binary to measure; repeat to measure several side by side
    /// (default: the `nodb` next to nodb-bench).
    #[arg(long = "nodb", value_name = "PATH")]
    binaries: Vec<PathBuf>,
    /// Products seeded (the size of the `stock` view).
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    products: u64,
    /// `stock/sold` actions posted in the measured run.
    #[arg(long, value_name = "N", default_value_t = 200_000)]
    actions: u64,
    /// Clients posting at once, one request in flight each.
    #[arg(long, value_name = "N", default_value_t = 4)]
    clients: usize,
    /// Actions per `POST /actions`.
    #[arg(long, value_name = "N", default_value_t = 500)]
    batch: u64,
    /// Measurements of each binary.
    #[arg(long, value_name = "N", default_value_t = 2)]
    rounds: usize,
    /// Milliseconds between polls of the view's seq.
    #[arg(long, value_name = "MS", default_value_t = 20)]
    poll_ms: u64,
}

/// The most the view may take to catch up after the last ack.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(600);

/// What one measurement found.
struct Outcome {
    /// Binary (index into the binaries) and round.
    bin: usize,
    round: usize,
    /// First post to last ack.
    ingest: Duration,
    /// First post to the first poll that saw the view at the last acked seq.
    view: Duration,
    /// The largest lag a poll saw, in seqs.
    lag_peak: u64,
    /// Polls made, and the longest a poll waited for its answer.
    polls: u64,
    slowest_poll: Duration,
    /// CPU time of the data view and of the chronicler over `view`.
    view_cpu: Option<Duration>,
    chronicler_cpu: Option<Duration>,
    /// Actions the data view's reducers rejected (should be 0), if known.
    rejections: Option<u64>,
    /// Of the measured actions, how many the data view applied in
    /// catch-up batches (`nodb_dataview_batched_total`), if it counts them.
    batched: Option<u64>,
}

impl Outcome {
    fn ratio(&self) -> f64 {
        self.view.as_secs_f64() / self.ingest.as_secs_f64().max(1e-9)
    }

    fn ingest_rate(&self, actions: u64) -> f64 {
        actions as f64 / self.ingest.as_secs_f64().max(1e-9)
    }

    fn view_rate(&self, actions: u64) -> f64 {
        actions as f64 / self.view.as_secs_f64().max(1e-9)
    }

    /// CPU per action, in microseconds.
    fn per_action(cpu: Option<Duration>, actions: u64) -> Option<f64> {
        Some(cpu?.as_secs_f64() * 1e6 / actions.max(1) as f64)
    }
}

/// The `nodb` binaries to measure: those given with `--nodb`, checked to
/// exist, or else the one next to nodb-bench.
pub(crate) fn binaries(given: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let binaries = if given.is_empty() { vec![nodb_bin()?] } else { given.to_vec() };
    for bin in &binaries {
        if !bin.is_file() {
            bail!("no nodb binary at {}", bin.display());
        }
    }
    Ok(binaries)
}

/// The order the binaries run in round `round`: first to last, then last
/// to first, alternating, so that none always runs first.
pub(crate) fn run_order(binaries: usize, round: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..binaries).collect();
    if round % 2 == 1 {
        order.reverse();
    }
    order
}

/// A figure of an [`Outcome`], for the summaries: its name and how to read it.
type Figure<'a> = (&'a str, Box<dyn Fn(&Outcome) -> Option<f64> + 'a>);

/// Runs the benchmark.
pub async fn run(args: &PipelineArgs) -> anyhow::Result<()> {
    if args.products == 0 || args.actions == 0 || args.clients == 0 || args.batch == 0 || args.rounds == 0 {
        bail!("--products, --actions, --clients, --batch and --rounds must be positive");
    }
    if args.poll_ms == 0 {
        bail!("--poll-ms must be positive");
    }
    let binaries = binaries(&args.binaries)?;
    let tmp = tempfile::Builder::new().prefix("nodb-bench-").tempdir_in(&args.dir)?;
    println!(
        "pipeline: {} products seeded, then {} stock/sold actions from {} clients (HTTP batches of {}), \
         the view's seq polled every {} ms",
        args.products, args.actions, args.clients, args.batch, args.poll_ms
    );
    for (i, bin) in binaries.iter().enumerate() {
        println!("  [{}] {}", i + 1, bin.display());
    }
    println!(
        "\n{:<5} {:>5} {:>9} {:>11} {:>9} {:>11} {:>11} {:>9} {:>13} {:>13} {:>6} {:>10}",
        "nodb",
        "round",
        "ingest",
        "ingest a/s",
        "view",
        "view a/s",
        "view/ingest",
        "lag peak",
        "view CPU/act",
        "chron CPU/act",
        "polls",
        "poll max"
    );
    let mut outcomes = Vec::new();
    for round in 0..args.rounds {
        for bin in run_order(binaries.len(), round) {
            let dir = tmp.path().join(format!("round{round}-nodb{bin}"));
            std::fs::create_dir(&dir)?;
            let o = measure(args, &binaries[bin], &dir, bin, round)
                .await
                .with_context(|| format!("[{}] {}, round {}", bin + 1, binaries[bin].display(), round + 1))?;
            print_row(&o, args.actions);
            outcomes.push(o);
            // The data of a finished measurement is no longer needed.
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    let actions = args.actions;
    let figures: Vec<Figure<'_>> = vec![
        ("ingest actions/s", Box::new(move |o: &Outcome| Some(o.ingest_rate(actions)))),
        ("view actions/s", Box::new(move |o: &Outcome| Some(o.view_rate(actions)))),
        ("view time / ingest time", Box::new(|o: &Outcome| Some(o.ratio()))),
        ("lag peak (seqs)", Box::new(|o: &Outcome| Some(o.lag_peak as f64))),
        ("data view CPU per action, µs", Box::new(move |o: &Outcome| Outcome::per_action(o.view_cpu, actions))),
        ("chronicler CPU per action, µs", Box::new(move |o: &Outcome| Outcome::per_action(o.chronicler_cpu, actions))),
        ("slowest /health answer, ms", Box::new(|o: &Outcome| Some(o.slowest_poll.as_secs_f64() * 1e3))),
        (
            "applied in catch-up batches, %",
            Box::new(move |o: &Outcome| Some(o.batched? as f64 * 100.0 / actions as f64)),
        ),
    ];
    println!("\nmedian of {} rounds [min, max]:", args.rounds);
    for (i, bin) in binaries.iter().enumerate() {
        println!("  [{}] {}", i + 1, bin.display());
        for (name, f) in &figures {
            let values: Vec<f64> = outcomes.iter().filter(|o| o.bin == i).filter_map(f).collect();
            println!("    {name:<32} {}", plain_summary(values));
        }
    }
    if binaries.len() > 1 {
        println!("\nratios between binaries, round by round (median [min, max]):");
        for other in 1..binaries.len() {
            println!("  [{}] / [1]:", other + 1);
            for (name, f) in &figures {
                let ratios: Vec<f64> = (0..args.rounds)
                    .filter_map(|round| {
                        let find = |bin| outcomes.iter().find(|o| o.bin == bin && o.round == round);
                        Some(f(find(other)?)? / f(find(0)?)?).filter(|r| r.is_finite())
                    })
                    .collect();
                println!("    {name:<32} {}", ratio_summary(ratios));
            }
        }
    }
    println!("\ntarget: view time / ingest time <= 1.25");
    for (i, _) in binaries.iter().enumerate() {
        let mut ratios: Vec<f64> = outcomes.iter().filter(|o| o.bin == i).map(Outcome::ratio).collect();
        ratios.sort_by(f64::total_cmp);
        let (Some(mid), Some(&worst)) = (median(&ratios), ratios.last()) else { continue };
        println!(
            "  [{}] median {mid:.2}, worst {worst:.2}: {}",
            i + 1,
            if worst <= 1.25 {
                "met in every round"
            } else if mid <= 1.25 {
                "met in the median, not every round"
            } else {
                "missed"
            }
        );
    }
    for o in outcomes.iter().filter(|o| o.rejections.is_some_and(|r| r > 0)) {
        println!(
            "warning: [{}] round {}: the data view rejected {} actions",
            o.bin + 1,
            o.round + 1,
            o.rejections.unwrap_or(0)
        );
    }
    Ok(())
}

fn print_row(o: &Outcome, actions: u64) {
    let cpu =
        |c: Option<Duration>| Outcome::per_action(c, actions).map_or_else(|| "-".into(), |us| format!("{us:.2} µs"));
    println!(
        "{:<5} {:>5} {:>9} {:>11.0} {:>9} {:>11.0} {:>10.2}x {:>9} {:>13} {:>13} {:>6} {:>10}",
        format!("[{}]", o.bin + 1),
        o.round + 1,
        format!("{:.2} s", o.ingest.as_secs_f64()),
        o.ingest_rate(actions),
        format!("{:.2} s", o.view.as_secs_f64()),
        o.view_rate(actions),
        o.ratio(),
        o.lag_peak,
        cpu(o.view_cpu),
        cpu(o.chronicler_cpu),
        o.polls,
        fmt_duration(o.slowest_poll)
    );
}

/// The median, smallest and largest of plain values.
fn plain_summary(mut values: Vec<f64>) -> String {
    values.sort_by(f64::total_cmp);
    match (median(&values), values.first(), values.last()) {
        (Some(mid), Some(lo), Some(hi)) => format!("{} [{}, {}]", short(mid), short(*lo), short(*hi)),
        _ => "-".into(),
    }
}

/// The median, smallest and largest of ratios, as `0.987x [0.95, 1.02]`.
fn ratio_summary(mut ratios: Vec<f64>) -> String {
    ratios.sort_by(f64::total_cmp);
    match (median(&ratios), ratios.first(), ratios.last()) {
        (Some(mid), Some(lo), Some(hi)) => format!("{mid:.3}x [{lo:.2}, {hi:.2}]"),
        _ => "-".into(),
    }
}

/// The median of sorted values (the mean of the middle two of an even count).
fn median(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// A figure with as many decimals as it needs.
fn short(v: f64) -> String {
    if v.abs() >= 100.0 { format!("{v:.0}") } else { format!("{v:.2}") }
}

/// One measurement with `bin`: fresh services in `dir`, seed, measured run.
async fn measure(args: &PipelineArgs, bin: &Path, dir: &Path, index: usize, round: usize) -> anyhow::Result<Outcome> {
    let no_limits = supported_flags(bin, "chronicler", &NO_LIMITS);
    let (chronicler, chronicler_addr) = start_chronicler_bin(bin, &dir.join("nodb"), None, &no_limits)?;
    let (view, view_addr) = start_dataview_bin(bin, dir, &chronicler_addr, None, &[])?;
    let actions_url = format!("http://{chronicler_addr}/actions");
    let dataview = format!("http://{view_addr}");

    // The seed: a correction per product, a billion on the shelf.
    let http = reqwest::Client::new();
    let mut seed_head = 0;
    let mut n = 0;
    for start in (0..args.products).step_by(args.batch as usize) {
        let end = (start + args.batch).min(args.products);
        let body = batch_body((start..end).map(|p| {
            n += 1;
            format!(
                r#"{{"id":"seed:{n}","type":"stock/corrected","payload":{{"product":"p{p}","location":"shelf","quantity":1000000000}}}}"#
            )
        }));
        seed_head = seed_head.max(post(&http, &actions_url, body).await?);
    }
    wait_for_seq(&http, &dataview, seed_head, Duration::from_secs(300)).await?;
    // Let the view settle (its checkpoint at the seed, if any) before the clock.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Every request body, built before the clock starts: client k posts
    // sales k, k + clients, k + 2 * clients, …
    let clients = args.clients as u64;
    let bodies: Vec<Vec<String>> = (0..clients)
        .map(|k| {
            let sales: Vec<u64> = (k..args.actions).step_by(args.clients).collect();
            sales
                .chunks(args.batch as usize)
                .enumerate()
                .map(|(b, chunk)| {
                    batch_body(chunk.iter().enumerate().map(|(j, &i)| {
                        let n = b * args.batch as usize + j + 1;
                        let p = (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20) % args.products;
                        format!(
                            r#"{{"id":"sale{k}:{n}","type":"stock/sold","payload":{{"product":"p{p}","location":"shelf","quantity":1}}}}"#
                        )
                    }))
                })
                .collect()
        })
        .collect();
    let last_seq = seed_head + args.actions;

    let head = Arc::new(AtomicU64::new(seed_head));
    let cpu_before = (cpu_time(view.pid()), cpu_time(chronicler.pid()));
    let batched_before = counter(&http, &dataview, "nodb_dataview_batched_total").await;
    let started = Instant::now();
    let poller = {
        let (head, health) = (head.clone(), format!("{dataview}/health"));
        let every = Duration::from_millis(args.poll_ms);
        tokio::spawn(poll(health, head, last_seq, started, every))
    };
    let mut tasks: Vec<_> = bodies
        .into_iter()
        .map(|bodies| {
            let (url, head) = (actions_url.clone(), head.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                for body in bodies {
                    let seq = post(&http, &url, body).await?;
                    head.fetch_max(seq, Relaxed);
                }
                anyhow::Ok(Instant::now())
            })
        })
        .collect();
    let mut last_ack = started;
    let mut failed = None;
    for t in &mut tasks {
        match t.await {
            Ok(Ok(at)) => last_ack = last_ack.max(at),
            Ok(Err(e)) => failed = failed.or(Some(e)),
            Err(e) => failed = failed.or(Some(e.into())),
        }
        if failed.is_some() {
            break;
        }
    }
    if let Some(e) = failed {
        poller.abort();
        tasks.iter().for_each(|t| t.abort());
        return Err(e);
    }
    let ingest = last_ack - started;
    let acked = head.load(Relaxed);
    if acked != last_seq {
        poller.abort();
        bail!("the last ack is seq {acked}, not {last_seq}: did something else write to the chronicler?");
    }
    let (view_time, lag_peak, polls, slowest_poll) = poller.await??;
    let cpu_after = (cpu_time(view.pid()), cpu_time(chronicler.pid()));
    let used = |before: Option<Duration>, after: Option<Duration>| Some(after?.saturating_sub(before?));
    let rejections = counter(&http, &dataview, "nodb_dataview_rejections_total").await;
    let batched_after = counter(&http, &dataview, "nodb_dataview_batched_total").await;
    let batched = batched_after.map(|after| after.saturating_sub(batched_before.unwrap_or(0)));
    Ok(Outcome {
        bin: index,
        round,
        ingest,
        view: view_time,
        lag_peak,
        polls,
        slowest_poll,
        view_cpu: used(cpu_before.0, cpu_after.0),
        chronicler_cpu: used(cpu_before.1, cpu_after.1),
        rejections,
        batched,
    })
    // `view` and `chronicler` drop here, and on every early return: both
    // processes are killed.
}

/// Polls `health` every `every` until the view's seq reaches `last_seq`:
/// the time from `started` to the first poll that saw it, the largest lag
/// behind `head` seen, how many polls were made and the longest one took
/// (a view too busy to answer `/health` hides its lag meanwhile).
async fn poll(
    health: String,
    head: Arc<AtomicU64>,
    last_seq: u64,
    started: Instant,
    every: Duration,
) -> anyhow::Result<(Duration, u64, u64, Duration)> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut peak, mut polls, mut seq, mut slowest) = (0, 0, 0, Duration::ZERO);
    loop {
        tick.tick().await;
        let sent = Instant::now();
        let Ok(resp) = http.get(&health).send().await else { continue };
        let Ok(body) = resp.json::<serde_json::Value>().await else { continue };
        // Taken after the answer: the view was at `seq` by then.
        let at = started.elapsed();
        slowest = slowest.max(sent.elapsed());
        polls += 1;
        seq = body["seq"].as_u64().unwrap_or(seq);
        peak = peak.max(head.load(Relaxed).saturating_sub(seq));
        if seq >= last_seq {
            return Ok((at, peak, polls, slowest));
        }
        if at > CATCH_UP_LIMIT {
            bail!("the data view is at seq {seq}, not {last_seq}, {} s after the start", at.as_secs());
        }
    }
}

/// A JSON array of the actions.
pub(crate) fn batch_body(actions: impl Iterator<Item = String>) -> String {
    let mut body = String::from("[");
    for (i, a) in actions.enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&a);
    }
    body.push(']');
    body
}

/// `POST /actions` with `body`; the highest seq acknowledged.
pub(crate) async fn post(http: &reqwest::Client, url: &str, body: String) -> anyhow::Result<u64> {
    let resp = http.post(url).header("content-type", "application/json").body(body).send().await?;
    let status = resp.status();
    let text = resp.text().await?;
    if !status.is_success() {
        bail!("the chronicler answered {status}: {text}");
    }
    last_seq(&text).with_context(|| format!("no seq in the acks: {text}"))
}

/// The seq of the last ack in `{"acks":[…,{"id":…,"seq":N,…}]}` (acks come
/// in order), without building a JSON tree: the load generator shares the
/// machine with the services.
fn last_seq(acks: &str) -> Option<u64> {
    let at = acks.rfind("\"seq\":")? + "\"seq\":".len();
    let digits = acks[at..].trim_start();
    let end = digits.find(|c: char| !c.is_ascii_digit()).unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// The pairs of `flags` (flag, value) that `nodb SUBCOMMAND --help` lists,
/// so that an older binary without some of them still starts.
pub(crate) fn supported_flags(bin: &Path, subcommand: &str, flags: &[&'static str]) -> Vec<&'static str> {
    let help = std::process::Command::new(bin)
        .args([subcommand, "--help"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    flags
        .chunks(2)
        .filter(|pair| help.contains(&format!("{} ", pair[0])) || help.contains(&format!("{}\n", pair[0])))
        .flatten()
        .copied()
        .collect()
}

/// The data view's counter `name` (summed over its labels), where it has one.
async fn counter(http: &reqwest::Client, dataview: &str, name: &str) -> Option<u64> {
    metric(http, dataview, name).await.map(|v| v as u64)
}

/// The data view's metric `name` (summed over its labels), where it has one.
pub(crate) async fn metric(http: &reqwest::Client, dataview: &str, name: &str) -> Option<f64> {
    let text = http.get(format!("{dataview}/metrics")).send().await.ok()?.text().await.ok()?;
    text.lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with([' ', '{'])))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .reduce(|a, b| a + b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_seq_of_the_acks() {
        let acks = r#"{"acks":[{"id":"a:1","seq":811,"duplicate":false},{"id":"a:2","seq":812,"duplicate":false}]}"#;
        assert_eq!(last_seq(acks), Some(812));
        assert_eq!(last_seq(r#"{"acks":[]}"#), None);
    }

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median(&[1.0, 2.0, 4.0, 8.0]), Some(3.0));
        assert_eq!(median(&[1.0, 2.0, 4.0]), Some(2.0));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn a_batch_is_a_json_array() {
        let body = batch_body(["{\"a\":1}".to_string(), "{\"b\":2}".to_string()].into_iter());
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        assert_eq!(v.as_array().map(Vec::len), Some(2));
    }
}
