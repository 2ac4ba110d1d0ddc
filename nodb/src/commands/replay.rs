//! `nodb replay`: replay the history with this binary's reducers and,
//! with `--against`, compare every view seq by seq with a running data view.

use std::io::Write;

use anyhow::Context;
use nodb_dataview::replay::{ReplaySettings, Report, replay};

use crate::Registry;
use crate::service;

/// Replay the history with this binary's reducers, in-process, and compare
/// the views with a running data view (the code in production).
///
/// Every view is compared at every seq from --from to --to: for each, either
/// "identical through seq N", or the first seq where the old and new states
/// differ, the action at that seq, the RFC 6902 patch from the old state to
/// the new one there, and how many seqs differ. The running data view is
/// read with its exact stream, so it replays its own history as it needs.
#[derive(clap::Args)]
#[command(after_help = "Example:
  nodb replay --app warehouse --chronicler http://127.0.0.1:7401 --against http://127.0.0.1:7402
  stock: identical through seq 200000
  activity: differs at 1213 of 200000 seqs; first at seq 4127

Exit status: 0 when every view is identical (or nothing was compared), 1 when a view differs,
2 on errors (a service that cannot be read, an unknown app).")]
pub struct Args {
    /// The application whose reducers to replay (this binary's).
    #[arg(long, default_value = "warehouse")]
    app: String,
    /// The chronicler's URL.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:7401")]
    chronicler: String,
    /// A running data view of the same app to compare with (its views are
    /// read with the same token).
    #[arg(long, value_name = "URL")]
    against: Option<String>,
    /// The first seq to compare (the replay starts at seq 1 regardless).
    #[arg(long, value_name = "SEQ", default_value_t = 1)]
    from: u64,
    /// The last seq (default: the chronicler's head when the replay starts).
    #[arg(long, value_name = "SEQ")]
    to: Option<u64>,
    #[command(flatten)]
    token: crate::guard::TokenFile,
}

/// The views differ: exit status 1.
#[derive(Debug)]
pub struct Differs;

impl std::fmt::Display for Differs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the views differ")
    }
}

impl std::error::Error for Differs {}

/// Runs the command.
pub fn run(args: &Args, apps: &Registry) -> anyhow::Result<()> {
    let app = apps
        .get(&args.app)
        .with_context(|| format!("no app {:?}; this nodb knows {}", args.app, apps.names().join(", ")))?;
    let token = args.token.source()?;
    let chronicler =
        nodb_client::ServiceUrl::parse(&args.chronicler).context("--chronicler")?.with_token_source(token.clone());
    let against = match &args.against {
        Some(url) => Some(nodb_client::ServiceUrl::parse(url).context("--against")?.with_token_source(token)),
        None => None,
    };
    let settings = ReplaySettings { from: args.from, to: args.to };
    let report = service::runtime()?.block_on(async move {
        let chronicler = nodb_client::Chronicler::new(chronicler);
        replay(app, &chronicler, against.as_ref(), &settings).await
    })?;
    print(&report, args.from).context("cannot write to standard output")?;
    if report.identical() { Ok(()) } else { Err(Differs.into()) }
}

fn print(report: &Report, from: u64) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    let rate = report.actions as f64 / report.seconds.max(1e-9);
    writeln!(
        out,
        "replayed {} actions through seq {} in {:.2} s ({rate:.0}/s)",
        report.actions, report.through, report.seconds
    )?;
    for v in &report.views {
        if !report.compared {
            writeln!(out, "{}: hash {} at seq {}", v.view, v.hash, report.through)?;
            continue;
        }
        let Some(first) = &v.first else {
            writeln!(out, "{}: identical through seq {}", v.view, report.through)?;
            continue;
        };
        let compared = report.through.saturating_sub(from.max(1)) + 1;
        writeln!(out, "{}: differs at {} of {compared} seqs; first at seq {}", v.view, v.differing, first.seq)?;
        writeln!(out, "  action: {}", serde_json::to_string(&first.action).unwrap_or_default())?;
        writeln!(out, "  old → new: {}", serde_json::to_string(&first.diff).unwrap_or_default())?;
    }
    Ok(())
}
