//! Runs the conformance runner (`mux-tests`' `mux-conformance` binary) per backend.

use std::process::Command;

/// How the suite runs against a backend (the runner's flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The store mux's tests use (local servers).
    Plain,
    /// The fault mode: networked stores through a fault proxy.
    Faults,
    /// The store started from its image by testcontainers.
    Container,
    /// The store opened with credentials it refuses (where it checks any).
    Denied,
}

impl Mode {
    /// The name in the table, and the runner's flag.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Plain => "plain",
            Mode::Faults => "faults",
            Mode::Container => "container",
            Mode::Denied => "denied",
        }
    }

    /// Parses `--faults` / `--container` (none: plain).
    pub fn from_flags(flags: &[String]) -> Result<Mode, String> {
        match flags
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice()
        {
            [] => Ok(Mode::Plain),
            ["--faults"] => Ok(Mode::Faults),
            ["--container"] => Ok(Mode::Container),
            ["--denied"] => Ok(Mode::Denied),
            other => Err(format!(
                "unknown options {other:?}: use --faults, --container or --denied (or none)"
            )),
        }
    }
}

/// One backend's line in the summary table.
#[derive(Debug, Clone)]
pub struct Row {
    pub backend: String,
    pub mode: Mode,
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    /// Set when the whole backend was skipped (unreachable here).
    pub skipped_reason: Option<String>,
}

fn parse_summary(line: &str) -> Option<(usize, usize, usize)> {
    // "N passed, M failed, K skipped"
    let mut nums = line
        .split(',')
        .map(|part| part.split_whitespace().next().and_then(|n| n.parse().ok()));
    Some((nums.next()??, nums.next()??, nums.next()??))
}

/// Runs the conformance runner with one argument, capturing its output.
///
/// The runner is the binary `cargo test --workspace` builds (mux-tests' integration
/// tests need it), so it shares the tests' one feature set and nothing compiles twice;
/// `cargo test --workspace --no-run` brings it up to date first.
fn runner(args: &[&str]) -> Result<std::process::Output, String> {
    // Brought up to date once per xtask run, not once per backend.
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    if BUILT.get().is_none() {
        crate::cargo(&["test", "--workspace", "--quiet", "--no-run"])?;
        let _ = BUILT.set(());
    }
    let binary = crate::target_dir()
        .join("debug")
        .join(format!("mux-conformance{}", std::env::consts::EXE_SUFFIX));
    Command::new(&binary).args(args).output().map_err(|e| {
        format!(
            "cannot run the conformance runner {}: {e}",
            binary.display()
        )
    })
}

/// Runs the suite for one backend in one mode, printing its output. In the fault
/// mode the seed comes from `MUX_FAULT_SEED` when set (the runner prints the seed it
/// used, so a failure can be replayed with it).
pub fn run_one(backend: &str, mode: Mode) -> Result<Row, String> {
    let seed = std::env::var("MUX_FAULT_SEED").ok();
    let mut args = vec![backend];
    match mode {
        Mode::Plain => {}
        Mode::Faults => {
            args.push("--faults");
            if let Some(seed) = &seed {
                args.extend(["--seed", seed]);
            }
        }
        Mode::Container => args.push("--container"),
        Mode::Denied => args.push("--denied"),
    }
    let output = runner(&args)?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    match output.status.code() {
        Some(3) => {
            let reason = stdout
                .lines()
                .find_map(|l| l.split_once("skipped: ").map(|(_, r)| r.to_owned()))
                .unwrap_or_else(|| "unreachable".into());
            Ok(Row {
                backend: backend.into(),
                mode,
                passed: 0,
                failed: 0,
                skipped: 0,
                skipped_reason: Some(reason),
            })
        }
        Some(0 | 1) => {
            let (passed, failed, skipped) = stdout
                .lines()
                .rev()
                .find_map(parse_summary)
                .ok_or_else(|| format!("the runner printed no summary for {backend}"))?;
            Ok(Row {
                backend: backend.into(),
                mode,
                passed,
                failed,
                skipped,
                skipped_reason: None,
            })
        }
        Some(4) => Err(format!(
            "the container mode cannot run {backend} here (the reason is above)"
        )),
        _ => Err(format!(
            "the conformance runner failed for {backend} ({})",
            output.status
        )),
    }
}

/// The backends the runner knows, in table order (asked from the runner itself).
pub fn backends() -> Result<Vec<String>, String> {
    let output = runner(&["--list"])?;
    if !output.status.success() {
        return Err("the conformance runner could not list its backends".into());
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect())
}

/// Runs the suite for every backend: plain, under faults, and with refused credentials
/// (a store that checks none is reported skipped in that mode).
pub fn run_all() -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    for backend in backends()? {
        for mode in [Mode::Plain, Mode::Faults, Mode::Denied] {
            rows.push(run_one(&backend, mode)?);
        }
    }
    Ok(rows)
}

pub fn print_table(rows: &[Row]) {
    println!("\nconformance summary");
    println!(
        "{:<10} {:<7} {:>7} {:>7} {:>8}  note",
        "backend", "mode", "passed", "failed", "skipped"
    );
    for r in rows {
        let note = match (&r.skipped_reason, r.failed) {
            (Some(why), _) => format!("backend skipped: {why}"),
            (None, 0) => String::new(),
            (None, _) => "FAILED".into(),
        };
        let line = format!(
            "{:<10} {:<7} {:>7} {:>7} {:>8}  {note}",
            r.backend,
            r.mode.name(),
            r.passed,
            r.failed,
            r.skipped
        );
        println!("{}", line.trim_end());
    }
    let (p, f, s) = rows.iter().fold((0, 0, 0), |(p, f, s), r| {
        (p + r.passed, f + r.failed, s + r.skipped)
    });
    println!("conformance: {p} passed, {f} failed, {s} skipped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_runner_summary() {
        assert_eq!(
            parse_summary("22 passed, 1 failed, 3 skipped"),
            Some((22, 1, 3))
        );
        assert_eq!(parse_summary("  pass  round_trip  1.0 ms"), None);
    }
}
