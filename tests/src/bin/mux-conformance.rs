//! Runs the conformance suite against one backend and prints one line per case, then
//! `N passed, M failed, K skipped`. Exit codes: 0 all passed, 1 a case failed,
//! 2 usage or setup error, 3 the backend is unreachable here (skipped, reason printed).
use std::process::ExitCode;

use mux_tests::{BACKENDS, Unavailable, backend};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--list") {
        println!("{}", BACKENDS.join(" "));
        return ExitCode::SUCCESS;
    }
    let [name] = args.as_slice() else {
        eprintln!(
            "usage: mux-conformance <backend>   (one of: {})",
            BACKENDS.join(", ")
        );
        return ExitCode::from(2);
    };
    let under_test = match backend(name).await {
        Ok(b) => b,
        Err(Unavailable::Skip(why)) => {
            println!("backend {name} skipped: {why}");
            return ExitCode::from(3);
        }
        Err(Unavailable::Error(e)) => {
            eprintln!("cannot set up backend {name}: {e}");
            return ExitCode::from(2);
        }
    };
    println!("conformance: {name}");
    let report = mux_conformance::run(under_test.backend.clone()).await;
    println!("{report}");
    if report.all_passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
