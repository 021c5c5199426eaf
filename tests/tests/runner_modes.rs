//! The conformance runner's modes, as `cargo xtask conformance` calls them.

use std::process::Command;

fn runner() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mux-conformance"))
}

/// Without a reachable Docker engine the container mode says so and exits 4 (not 0,
/// and not the "backend skipped" 3 that CI tolerates for optional stores).
#[test]
fn the_container_mode_says_when_no_docker_engine_is_reachable() {
    let out = runner()
        .args(["redis", "--container"])
        // A port nothing listens on: no engine, whatever this machine has.
        .env("DOCKER_HOST", "tcp://127.0.0.1:9")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(4), "{stdout}");
    assert!(stdout.contains("cannot run here"), "{stdout}");
    assert!(stdout.contains("Docker engine"), "{stdout}");
}

/// An in-process backend has no image: the container mode refuses it by name.
#[test]
fn the_container_mode_is_for_networked_stores() {
    let out = runner().args(["fs", "--container"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(4), "{stdout}");
    assert!(stdout.contains("runs in process"), "{stdout}");
}

/// Bad options are usage errors naming the problem.
#[test]
fn bad_options_are_usage_errors() {
    for args in [
        &["redis", "--fast"][..],
        &["redis", "--seed", "1"],
        &["redis", "--faults", "--seed", "x"],
    ] {
        let out = runner().args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("usage: mux-conformance"), "{stderr}");
    }
}

/// The fault mode runs, prints its seed, and passes against the memory backend.
#[test]
fn the_fault_mode_prints_its_seed_and_passes_for_memory() {
    let out = runner()
        .args(["memory", "--faults", "--seed", "5"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("--seed 5"), "{stdout}");
    assert!(stdout.contains("7 passed, 0 failed, 0 skipped"), "{stdout}");
}

/// The denied mode: PostgreSQL refuses an unknown role as a permanent
/// `PermissionDenied`; a store that checks no credentials here is skipped, saying so.
#[test]
fn the_denied_mode_runs_where_credentials_are_checked() {
    let out = runner().args(["postgres", "--denied"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("1 passed, 0 failed"), "{stdout}");
    let out = runner().args(["redis", "--denied"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(stdout.contains("checks no credentials"), "{stdout}");
}
