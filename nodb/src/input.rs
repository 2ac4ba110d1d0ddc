//! Reading JSON documents from files or standard input, with errors that
//! name the file, line and column.

use std::io::Read;

use anyhow::{Context, bail};
use serde::de::DeserializeOwned;

/// Reads `path` (or standard input for `-`) and parses it as JSON of type
/// `T`. `what` says what the file should hold ("JSON", "JSON Patch").
pub fn read_json<T: DeserializeOwned>(path: &str, what: &str) -> anyhow::Result<T> {
    let (name, bytes) = if path == "-" {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf).context("cannot read standard input")?;
        ("<stdin>".to_string(), buf)
    } else {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {path}"))?;
        (path.to_string(), bytes)
    };
    serde_json::from_slice(&bytes).map_err(|e| {
        let kind = match e.classify() {
            serde_json::error::Category::Data => format!("not a valid {what}"),
            serde_json::error::Category::Eof => "invalid JSON (unexpected end of input)".to_string(),
            _ => "invalid JSON".to_string(),
        };
        anyhow::anyhow!("{name}:{}:{}: {kind}: {}", e.line(), e.column(), message_of(&e))
    })
}

/// serde_json's message without its trailing " at line L column C".
fn message_of(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// Fails if more than one of `paths` is `-`: standard input can be read once.
pub fn at_most_one_stdin(paths: &[&str]) -> anyhow::Result<()> {
    if paths.iter().filter(|p| **p == "-").count() > 1 {
        bail!("only one input can be standard input (-)");
    }
    Ok(())
}

/// Prints `value` as JSON on standard output, compact or pretty.
pub fn print_json<T: serde::Serialize>(value: &T, pretty: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if pretty {
        serde_json::to_writer_pretty(&mut out, value)?;
    } else {
        serde_json::to_writer(&mut out, value)?;
    }
    writeln!(out)?;
    out.flush().context("cannot write to standard output")?;
    Ok(())
}
