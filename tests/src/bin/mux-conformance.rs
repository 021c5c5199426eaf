//! Runs the conformance suite against one backend and prints one line per case, then
//! `N passed, M failed, K skipped`.
//!
//! `mux-conformance <backend> [--faults [--seed N] | --container]`:
//! - no flag: the store mux's tests use (`MUX_*` settings, local servers);
//! - `--faults`: the fault mode (`mux_conformance::run_under_faults`), networked stores
//!   reached through a fault proxy; the seed is printed (and taken from `--seed`);
//! - `--container`: the store started from its image by testcontainers;
//! - `--denied`: the store opened with credentials it refuses (postgres, mysql, azure):
//!   every operation must fail with a permanent `PermissionDenied`.
//!
//! Exit codes: 0 all passed, 1 a case failed, 2 usage or setup error, 3 the backend is
//! unreachable here (skipped, reason printed), 4 the container mode cannot run here
//! (no Docker engine; reason printed).
use std::process::ExitCode;
use std::sync::Arc;

use mux::Backend;
use mux_conformance::{Faults, Report};
use mux_tests::container::backend_in_container;
use mux_tests::faults::backend_under_faults;
use mux_tests::{BACKENDS, TestBackend, Unavailable, backend};

const USAGE: &str =
    "usage: mux-conformance <backend> [--faults [--seed N] | --container | --denied]";

/// How the suite is run.
enum Mode {
    Plain,
    Faults(u64),
    Container,
    Denied,
}

fn parse(args: &[String]) -> Result<(String, Mode), String> {
    let mut name = None;
    let mut mode = Mode::Plain;
    let mut seed = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--faults" => mode = Mode::Faults(0),
            "--container" => mode = Mode::Container,
            "--denied" => mode = Mode::Denied,
            "--seed" => {
                let value = args.next().ok_or("--seed needs a number")?;
                seed = Some(
                    value
                        .parse()
                        .map_err(|_| format!("--seed {value}: not a number"))?,
                );
            }
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            backend if name.is_none() => name = Some(backend.to_owned()),
            extra => return Err(format!("unexpected argument {extra}")),
        }
    }
    let name = name.ok_or("no backend named")?;
    if let Mode::Faults(_) = mode {
        let fresh = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1);
        mode = Mode::Faults(seed.unwrap_or(fresh));
    } else if seed.is_some() {
        return Err("--seed goes with --faults".into());
    }
    Ok((name, mode))
}

fn finish(report: &Report) -> ExitCode {
    println!("{report}");
    if report.all_passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn factory(
    backend: Arc<dyn Backend>,
) -> impl FnMut() -> std::future::Ready<mux::Result<Arc<dyn Backend>>> {
    move || std::future::ready(Ok(backend.clone()))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--list") {
        println!("{}", BACKENDS.join(" "));
        return ExitCode::SUCCESS;
    }
    let (name, mode) = match parse(&args) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("{e}\n{USAGE}   (backends: {})", BACKENDS.join(", "));
            return ExitCode::from(2);
        }
    };
    let unavailable = |e: Unavailable| match e {
        Unavailable::Skip(why) => {
            println!("backend {name} skipped: {why}");
            ExitCode::from(3)
        }
        Unavailable::Error(e) => {
            eprintln!("cannot set up backend {name}: {e}");
            ExitCode::from(2)
        }
    };
    match mode {
        Mode::Plain => {
            let under_test: TestBackend = match backend(&name).await {
                Ok(b) => b,
                Err(e) => return unavailable(e),
            };
            println!("conformance: {name}");
            finish(&mux_conformance::run(under_test.backend.clone()).await)
        }
        Mode::Faults(seed) => {
            let faults = Faults::new(seed);
            let under_test = match backend_under_faults(&name, &faults).await {
                Ok(b) => b,
                Err(e) => return unavailable(e),
            };
            println!("conformance under faults: {name} (replay with --seed {seed})");
            let report =
                mux_conformance::run_under_faults(factory(under_test.backend.clone()), faults)
                    .await;
            println!("{}", report.backend);
            finish(&report)
        }
        Mode::Denied => match mux_tests::denied::denied_spec(&name) {
            Err(why) => {
                println!("backend {name} skipped: {why}");
                ExitCode::from(3)
            }
            Ok(spec) => {
                println!("conformance with refused credentials: {name}");
                finish(&mux_conformance::run_denied(|| mux::open(&spec)).await)
            }
        },
        Mode::Container => match backend_in_container(&name).await {
            Ok(contained) => {
                println!("conformance in a container: {name}");
                finish(&mux_conformance::run(contained.backend.backend.clone()).await)
            }
            Err(Unavailable::Skip(why)) => {
                println!("container mode for {name} cannot run here: {why}");
                ExitCode::from(4)
            }
            Err(e) => unavailable(e),
        },
    }
}
