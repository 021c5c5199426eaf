//! `cargo xtask fuzz [--seconds N] [--target NAME]`: each cargo fuzz target of `fuzz/`
//! for a while, from its seeds, reporting the crashes found.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cargo;

const USAGE: &str = "usage: cargo xtask fuzz [--seconds N] [--target NAME]";

/// Runs the targets; fails naming every target that crashed and where its input is.
pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let mut seconds = 60u64;
    let mut only = None;
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let value = rest
            .next()
            .ok_or_else(|| format!("{flag} needs a value; {USAGE}"))?;
        match flag.as_str() {
            "--seconds" => {
                seconds = value
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("--seconds {value}: give a positive integer"))?;
            }
            "--target" => only = Some(value.clone()),
            other => return Err(format!("unknown option {other}; {USAGE}")),
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the workspace")
        .to_path_buf();
    let fuzz_dir = root.join("fuzz");
    let targets = targets(&fuzz_dir)?;
    if let Some(name) = only.as_ref().filter(|n| !targets.contains(n)) {
        return Err(format!(
            "no fuzz target {name}; the targets are {}",
            targets.join(", ")
        ));
    }
    ensure_cargo_fuzz()?;
    let corpus = fuzz_dir.join("corpus");
    let corpus_arg = corpus.to_string_lossy().into_owned();
    cargo(&[
        "run",
        "-q",
        "-p",
        "mux-fuzz",
        "--example",
        "seeds",
        "--",
        &corpus_arg,
    ])?;
    let target_dir = crate::target_dir().join("fuzz");
    let mut crashed = Vec::new();
    for name in targets
        .iter()
        .filter(|t| only.as_ref().is_none_or(|o| o == *t))
    {
        eprintln!("\n== fuzz target {name}: {seconds} s");
        let status = Command::new("cargo")
            .current_dir(&fuzz_dir)
            .env("CARGO_TARGET_DIR", &target_dir)
            .args(["+nightly", "fuzz", "run", "--fuzz-dir", "."])
            .arg(name)
            .arg(corpus.join(name))
            .args([
                "--",
                &format!("-max_total_time={seconds}"),
                "-timeout=10",
                "-rss_limit_mb=4096",
                "-print_final_stats=1",
            ])
            .status()
            .map_err(|e| format!("cannot run cargo fuzz: {e}"))?;
        if !status.success() {
            crashed.push(name.clone());
        }
    }
    if crashed.is_empty() {
        eprintln!("\nfuzz: every target ran {seconds} s without a crash");
        return Ok(());
    }
    Err(format!(
        "fuzz targets crashed: {}. Each input is under fuzz/artifacts/<target>/ (the \
         command to replay it is printed above); fix the parser, then move the input to \
         fuzz/regressions/<target>/ so the tests keep it",
        crashed.join(", ")
    ))
}

/// The target names, from `fuzz/fuzz_targets/*.rs`.
fn targets(fuzz_dir: &Path) -> Result<Vec<String>, String> {
    let dir = fuzz_dir.join("fuzz_targets");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .filter_map(|entry| {
            let path: PathBuf = entry.ok()?.path();
            (path.extension()? == "rs").then(|| path.file_stem()?.to_str().map(str::to_owned))?
        })
        .collect();
    names.sort();
    Ok(names)
}

/// cargo fuzz and a nightly toolchain, installing cargo fuzz when it is missing.
fn ensure_cargo_fuzz() -> Result<(), String> {
    let works = |args: &[&str]| {
        Command::new("cargo")
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !works(&["+nightly", "--version"]) {
        return Err(
            "cargo fuzz needs a nightly toolchain: `rustup toolchain install nightly`".into(),
        );
    }
    if !works(&["fuzz", "--version"]) {
        eprintln!("cargo fuzz is not installed: installing it");
        cargo(&["install", "cargo-fuzz", "--locked"])?;
    }
    Ok(())
}
