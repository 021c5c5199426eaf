//! `cargo xtask` — mux's project tasks. Run bare for help.

mod conformance;
mod fuzz;
mod services;

use std::env;
use std::process::{Command, ExitCode};

const HELP: &str = "\
cargo xtask <task>

Tasks:
  test                    fmt check, the servers the tests need (found, started or
                          installed: `services up --install`), clippy (-D warnings), the
                          workspace tests, then the conformance suite for every backend,
                          plain and in the fault mode; prints a summary table
  ci                      what .ci/run calls: `test`, then fails if a backend named in
                          MUX_REQUIRE (comma-separated) was skipped or failed
  chaos [--scale K] [--seed N]
                          the recorded-history fault scenarios
                          (tests/tests/history_faults.rs, history_object_faults.rs, and
                          muxd processes killed in crates/muxd/tests/kill_history.rs) K times longer and larger than
                          in `test` (default 5), one at a time, each printing its seed and
                          figures; --seed replays a run's operation sequence
  fuzz [--seconds N] [--target NAME]
                          each cargo fuzz target of fuzz/ (nightly; installs cargo-fuzz
                          if missing) for N seconds (default 60) from its seeds; names
                          every target that crashed and where its input was kept
  bench <name>            a benchmark (coordinator, intent-log, postgres-redis,
                          object-stores, aws, stores, cache, anti-entropy, proxy,
                          clients, security); prints a table and writes
                          $CARGO_TARGET_DIR/bench/<name>.json (target/bench/ by default)
  services up|down|status [--install]
                          finds PostgreSQL (127.0.0.1:5432), MariaDB (127.0.0.1:3306),
                          Redis (127.0.0.1:6379) and InfluxDB 1.x (127.0.0.1:8086),
                          starts missing ones from the installed binaries (--install:
                          installs them with apt-get first), prints the URLs tests use
  conformance <backend> [--faults | --container | --denied]
                          the conformance suite for one backend; ends with
                          `N passed, M failed, K skipped`
                          (`cargo run -p mux-tests --bin mux-conformance -- --list`);
                          --faults: the fault mode (networked stores through a fault
                          proxy; seed printed, MUX_FAULT_SEED replays it);
                          --container: the store started from its image with
                          testcontainers (needs a Docker engine; fails without one);
                          --denied: opened with credentials the store refuses (postgres,
                          mysql, azure): every call must fail as permanent permission_denied

Environment:
  MUX_REQUIRE             backends that must run and pass in `ci` (e.g. memory,fs,redb)
  MUX_POSTGRES_URL        PostgreSQL for tests (default postgres://postgres@127.0.0.1:5432/postgres)
  MUX_MYSQL_URL           MariaDB/MySQL for tests (default mysql://root@127.0.0.1:3306/test)
  MUX_REDIS_URL           Redis for tests (default redis://127.0.0.1:6379)
  MUX_SCYLLA_NODES        an existing ScyllaDB/Cassandra cluster for tests (host:port,...);
                          unset: the scylla backend is skipped (no CQL server installs here)
  MUX_INFLUX_URL          InfluxDB 1.x for tests (default http://127.0.0.1:8086)
  MUX_FAULT_SEED          the seed of the conformance fault mode (default: a fresh one,
                          printed)
  CARGO_TARGET_DIR        where cargo builds (CI points it outside the clone)
";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        None | Some("help" | "-h" | "--help") => {
            print!("{HELP}");
            Ok(())
        }
        Some("test") => test().map(|_| ()),
        Some("ci") => ci(),
        Some("chaos") => chaos(&args[1..]),
        Some("fuzz") => fuzz::run(&args[1..]),
        Some("services") => {
            let install = args.iter().any(|a| a == "--install");
            match args.get(1).map(String::as_str) {
                Some("up") => services::up(install),
                Some("down") => services::down(),
                Some("status") => services::status(),
                _ => Err("usage: cargo xtask services up|down|status [--install]".into()),
            }
        }
        Some("bench") => match args.get(1) {
            Some(name) => bench(name),
            None => Err(format!(
                "usage: cargo xtask bench <name>   (one of: {})",
                BENCHES.join(", ")
            )),
        },
        Some("conformance") => match args.get(1) {
            Some(backend) => conformance::Mode::from_flags(&args[2..])
                .and_then(|mode| conformance::run_one(backend, mode))
                .and_then(|row| {
                    if row.failed > 0 || row.skipped_reason.is_some() {
                        Err(format!("conformance of {backend} did not pass"))
                    } else {
                        Ok(())
                    }
                }),
            None => Err(
                "usage: cargo xtask conformance <backend> [--faults | --container | --denied]"
                    .into(),
            ),
        },
        Some(other) => Err(format!("unknown task '{other}'\n\n{HELP}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a cargo command in the workspace, echoing it; fails on a non-zero exit.
pub(crate) fn cargo(args: &[&str]) -> Result<(), String> {
    eprintln!("\n$ cargo {}", args.join(" "));
    let status = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(args)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`cargo {}` failed ({status})", args.join(" ")))
    }
}

/// The benchmarks (bench targets of `mux-tests`).
const BENCHES: &[&str] = &[
    "coordinator",
    "intent-log",
    "postgres-redis",
    "object-stores",
    "aws",
    "stores",
    "cache",
    "anti-entropy",
    "proxy",
    "clients",
    "security",
];

fn bench(name: &str) -> Result<(), String> {
    if !BENCHES.contains(&name) {
        return Err(format!(
            "unknown benchmark '{name}' (one of: {})",
            BENCHES.join(", ")
        ));
    }
    let out = target_dir().join("bench").join(format!("{name}.json"));
    let cargo_bin = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut bench = Command::new(&cargo_bin);
    if name == "proxy" {
        // The proxy bench runs muxd as its own process, built as a user would run it.
        let status = Command::new(&cargo_bin)
            .args([
                "build",
                "--quiet",
                "--release",
                "-p",
                "muxd",
                "--bin",
                "muxd",
            ])
            .status()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if !status.success() {
            return Err(format!("building muxd failed ({status})"));
        }
        bench.env("MUX_MUXD_BIN", target_dir().join("release").join("muxd"));
    }
    bench.args(["bench", "--quiet", "-p", "mux-tests", "--bench", name]);
    if name == "clients" {
        // The alternatives it measures mux against are bench-only dependencies.
        bench.args(["--features", "alternatives"]);
    }
    let status = bench
        .env("MUX_BENCH_OUT", &out)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("benchmark {name} failed ({status})"));
    }
    eprintln!("results: {}", out.display());
    Ok(())
}

/// Where cargo builds: `CARGO_TARGET_DIR`, else the workspace's `target/`.
pub(crate) fn target_dir() -> std::path::PathBuf {
    env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("target")
        })
}

/// The whole check, on one feature set (the workspace's own, no `--all-features`): the
/// tests, the conformance runner and clippy share every compiled dependency.
fn test() -> Result<Vec<conformance::Row>, String> {
    cargo(&["fmt", "--all", "--check"])?;
    // The servers the tests need: found running, started, or installed and started.
    services::up(true)?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    // Every failing test binary in one run, not only the first.
    cargo(&["test", "--workspace", "--no-fail-fast"])?;
    let rows = conformance::run_all()?;
    conformance::print_table(&rows);
    let failed: Vec<String> = rows
        .iter()
        .filter(|r| r.failed > 0)
        .map(|r| format!("{} ({})", r.backend, r.mode.name()))
        .collect();
    if failed.is_empty() {
        Ok(rows)
    } else {
        Err(format!("conformance failed for: {}", failed.join(", ")))
    }
}

/// `cargo xtask chaos [--scale K] [--seed N]`.
fn chaos(args: &[String]) -> Result<(), String> {
    let usage = "usage: cargo xtask chaos [--scale K] [--seed N]";
    let mut scale = "5".to_owned();
    let mut seed = None;
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let value = rest
            .next()
            .ok_or_else(|| format!("{flag} needs a value; {usage}"))?;
        match flag.as_str() {
            "--scale" => {
                value
                    .parse::<u32>()
                    .ok()
                    .filter(|k| *k > 0)
                    .ok_or_else(|| format!("--scale {value}: give a positive integer"))?;
                scale = value.clone();
            }
            "--seed" => seed = Some(value.clone()),
            other => return Err(format!("unknown option {other}; {usage}")),
        }
    }
    services::up(false)?;
    let args = [
        "test",
        "--workspace",
        "--test",
        "history_faults",
        "--test",
        "history_object_faults",
        "--test",
        "kill_history",
        "--",
        "--nocapture",
        "--test-threads",
        "1",
    ];
    eprintln!(
        "\n$ MUX_CHAOS_SCALE={scale}{} cargo {}",
        seed.as_ref()
            .map(|s| format!(" MUX_CHAOS_SEED={s}"))
            .unwrap_or_default(),
        args.join(" ")
    );
    let mut command = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.args(args).env("MUX_CHAOS_SCALE", &scale);
    if let Some(seed) = &seed {
        command.env("MUX_CHAOS_SEED", seed);
    }
    let status = command
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "a chaos scenario failed ({status}); its seed is printed above"
        ))
    }
}

fn ci() -> Result<(), String> {
    let rows = test()?;
    let required = env::var("MUX_REQUIRE").unwrap_or_default();
    let mut missing = Vec::new();
    for name in required.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        // The denied mode runs only where the local store checks credentials: its skip
        // is reported in the table, not required away.
        let of_backend: Vec<_> = rows
            .iter()
            .filter(|r| r.backend == name && r.mode != conformance::Mode::Denied)
            .collect();
        if of_backend.is_empty() {
            missing.push(format!("{name} (not a backend xtask knows)"));
        }
        for r in of_backend {
            let mode = r.mode.name();
            match &r.skipped_reason {
                Some(why) => missing.push(format!("{name} {mode} (skipped: {why})")),
                None if r.failed > 0 || r.passed == 0 => missing.push(format!(
                    "{name} {mode} ({} failed, {} passed)",
                    r.failed, r.passed
                )),
                None => {}
            }
        }
    }
    if missing.is_empty() {
        eprintln!("ci: every required backend ran and passed ({required})");
        Ok(())
    } else {
        Err(format!(
            "required backends did not pass: {}",
            missing.join("; ")
        ))
    }
}
