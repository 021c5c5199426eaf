//! Every fuzz target over its seeds, every kept regression input
//! (`fuzz/regressions/<target>/`) and deterministic mutations of the seeds: a crash
//! the fuzzer found stays fixed, and the cheapest mutations are tried on every run.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use mux_fuzz::{TARGETS, Target, mutations};

/// Mutations tried per target on each run (spread over its seeds).
const MUTATIONS_PER_TARGET: usize = 10_000;

fn regressions_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions")
}

/// Runs `input`; on a panic, keeps the input where the message says and fails naming
/// how to replay it.
fn run(target: &Target, input: &[u8], origin: &str) {
    if catch_unwind(AssertUnwindSafe(|| (target.run)(input))).is_ok() {
        return;
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures");
    std::fs::create_dir_all(&dir).expect("a directory for the failing input");
    let path = dir.join(format!("{}-{:016x}", target.name, fxhash(input)));
    std::fs::write(&path, input).expect("the failing input is kept");
    panic!(
        "fuzz target {} panicked on {origin} ({} bytes), kept in {}: replay it with \
         `cargo +nightly fuzz run {} {}` and, once fixed, move it to \
         fuzz/regressions/{}/",
        target.name,
        input.len(),
        path.display(),
        target.name,
        path.display(),
        target.name
    );
}

fn fxhash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[test]
fn seeds_run_clean() {
    for target in TARGETS {
        for (i, seed) in (target.seeds)().iter().enumerate() {
            run(target, seed, &format!("seed {i}"));
        }
    }
}

#[test]
fn kept_regression_inputs_run_clean() {
    let mut count = 0;
    for entry in std::fs::read_dir(regressions_dir()).expect("fuzz/regressions exists") {
        let dir = entry.expect("a directory entry").path();
        if !dir.is_dir() {
            continue;
        }
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let target = mux_fuzz::target(name).unwrap_or_else(|| {
            panic!("fuzz/regressions/{name} names no fuzz target (see mux_fuzz::TARGETS)")
        });
        for file in std::fs::read_dir(&dir).expect("a regression directory") {
            let path = file.expect("a regression input").path();
            let input = std::fs::read(&path).expect("a readable regression input");
            run(target, &input, &path.display().to_string());
            count += 1;
        }
    }
    println!("{count} regression inputs ran clean");
}

#[test]
fn seed_mutations_run_clean() {
    for (salt, target) in TARGETS.iter().enumerate() {
        let seeds = (target.seeds)();
        let per_seed = MUTATIONS_PER_TARGET / seeds.len();
        for (i, seed) in seeds.iter().enumerate() {
            for (j, input) in mutations(seed, per_seed, (salt * 1000 + i) as u64)
                .iter()
                .enumerate()
            {
                run(target, input, &format!("mutation {j} of seed {i}"));
            }
        }
    }
}
