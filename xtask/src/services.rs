//! `cargo xtask services up|down|status [--install]`: the servers the tests need.
//!
//! `up` finds each server on its port on 127.0.0.1 — PostgreSQL 5432, Redis 6379, the
//! S3 server 4566, Azurite 10000 — and starts the ones not running, from a scratch
//! directory (`$MUX_SERVICES_DIR`, default `/var/tmp/mux-services`):
//! - PostgreSQL and Redis from the installed binaries; PostgreSQL runs as the
//!   `postgres` user (it refuses root) with trust authentication on 127.0.0.1 only;
//! - S3: the moto server from a Python venv at `<dir>/venv` (which also holds boto3 and
//!   azure-storage-blob, the independent clients of the plain-data test), through
//!   `xtask/assets/moto_server.py`, which applies writes to one object one at a time
//!   as S3 does;
//! - Azure Blob: Azurite from npm in `<dir>/azurite`, in memory;
//! - MariaDB (3306) from the installed `mariadbd` (see `services/mysql.rs`);
//! - InfluxDB 1.x (8086) from the installed `influxd` with a generated config, data in
//!   `<dir>/influxdb` (see `services/influx.rs`).
//!
//! The two in-memory emulators are restarted by every `up` that finds them running
//! from an earlier `up`, so each test run starts with empty stores.
//!
//! With `--install`, what is missing is installed first (apt-get, pip into the venv,
//! npm). `down` stops only what `up` started.

mod influx;
mod mysql;

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";
/// The S3 server's endpoint.
pub const S3_ENDPOINT: &str = "http://127.0.0.1:4566";
const S3_PORT: u16 = 4566;
/// Azurite's blob endpoint, with its well-known development account.
pub const AZURE_BLOB_ENDPOINT: &str = "http://127.0.0.1:10000/devstoreaccount1";
const AZURE_PORT: u16 = 10000;
/// Azurite's documented development key (public; not a secret).
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// What the venv holds: the S3 server and the independent clients of the tests.
const PYTHON_PACKAGES: &[&str] = &["moto[server]>=5.1,<6", "boto3", "azure-storage-blob>=12.20"];
/// The Azurite release line used.
const AZURITE_PACKAGE: &str = "azurite@3";

fn reachable(port: u16) -> bool {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

fn wait_for(port: u16, what: &str) -> Result<(), String> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if reachable(port) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(format!(
        "{what} did not start listening on 127.0.0.1:{port} within 30 s"
    ))
}

/// Not under the home directory: PostgreSQL runs as another user and must reach it.
fn scratch() -> PathBuf {
    std::env::var_os("MUX_SERVICES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/mux-services"))
}

fn run(cmd: &mut Command) -> Result<(), String> {
    eprintln!("$ {cmd:?}");
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed ({status})"))
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// The newest installed PostgreSQL's bin directory (Debian layout), or one on PATH.
fn postgres_bin() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").is_file())
        .collect();
    versions.sort();
    versions
        .pop()
        .or_else(|| which("initdb").and_then(|p| p.parent().map(Path::to_path_buf)))
}

fn apt_install(packages: &[&str]) -> Result<(), String> {
    run(Command::new("apt-get").arg("update").arg("-q"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn as_postgres(bin: &Path, args: &[&str]) -> Command {
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    };
    cmd.args(args);
    cmd
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false)
}

fn postgres_up(install: bool) -> Result<(), String> {
    if reachable(5432) {
        eprintln!("postgres: running on 127.0.0.1:5432");
        return Ok(());
    }
    let bin = match postgres_bin() {
        Some(b) => b,
        None if install => {
            apt_install(&["postgresql", "ssl-cert"])?;
            postgres_bin().ok_or("postgresql was installed but initdb is not found")?
        }
        None => {
            return Err("PostgreSQL is not running and not installed: run `cargo xtask services up --install`".into());
        }
    };
    let dir = scratch().join("postgres");
    let data = dir.join("data");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    if is_root() {
        run(Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir))?;
    }
    if !data.join("PG_VERSION").exists() {
        run(&mut as_postgres(
            &bin.join("initdb"),
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        ))?;
    }
    let log = dir.join("postgres.log");
    // TLS with Debian's snakeoil certificate (for `localhost`) when it exists, so the
    // TLS test has a server to talk to.
    let (cert, key) = (
        "/etc/ssl/certs/ssl-cert-snakeoil.pem",
        "/etc/ssl/private/ssl-cert-snakeoil.key",
    );
    let ssl = if Path::new(cert).exists() && Path::new(key).exists() {
        format!(" -c ssl=on -c ssl_cert_file={cert} -c ssl_key_file={key}")
    } else {
        eprintln!("postgres: no snakeoil certificate (package ssl-cert): starting without TLS");
        String::new()
    };
    run(&mut as_postgres(
        &bin.join("pg_ctl"),
        &[
            "-D",
            data.to_str().unwrap(),
            "-l",
            log.to_str().unwrap(),
            "-o",
            &format!(
                "-p 5432 -c listen_addresses=127.0.0.1 -k {}{ssl}",
                dir.display()
            ),
            "-w",
            "start",
        ],
    ))?;
    std::fs::write(dir.join("started-by-xtask"), "").ok();
    wait_for(5432, "postgres")?;
    eprintln!(
        "postgres: started from {} (data in {})",
        bin.display(),
        data.display()
    );
    Ok(())
}

fn redis_up(install: bool) -> Result<(), String> {
    if reachable(6379) {
        eprintln!("redis: running on 127.0.0.1:6379");
        return Ok(());
    }
    if which("redis-server").is_none() {
        if !install {
            return Err(
                "Redis is not running and not installed: run `cargo xtask services up --install`"
                    .into(),
            );
        }
        apt_install(&["redis-server"])?;
    }
    let dir = scratch().join("redis");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    run(Command::new("redis-server")
        .args([
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "--port",
            "6379",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(&dir)
        .arg("--logfile")
        .arg(dir.join("redis.log"))
        .arg("--pidfile")
        .arg(dir.join("redis.pid")))?;
    std::fs::write(dir.join("started-by-xtask"), "").ok();
    wait_for(6379, "redis")?;
    eprintln!("redis: started (scratch directory {})", dir.display());
    Ok(())
}

/// The venv's Python.
pub fn venv_python() -> PathBuf {
    scratch().join("venv/bin/python")
}

fn venv_ready() -> bool {
    Command::new(venv_python())
        .args(["-c", "import moto, boto3, azure.storage.blob"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Starts `cmd` in the background with its output in `log`, recording its pid.
fn spawn_logged(cmd: &mut Command, dir: &Path, name: &str) -> Result<(), String> {
    let log = std::fs::File::create(dir.join(format!("{name}.log")))
        .map_err(|e| format!("cannot create {name}.log in {}: {e}", dir.display()))?;
    let err = log.try_clone().map_err(|e| e.to_string())?;
    eprintln!("$ {cmd:?} &");
    let child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot start {name}: {e}"))?;
    std::fs::write(dir.join(format!("{name}.pid")), child.id().to_string()).ok();
    std::fs::write(dir.join("started-by-xtask"), "").ok();
    Ok(())
}

/// Whether the server on `port` answers an HTTP request within 10 s (a server can
/// accept connections and still hang).
fn answers_http(port: u16) -> bool {
    use std::io::{Read, Write};
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return false;
    };
    let timeout = Some(Duration::from_secs(10));
    if stream.set_read_timeout(timeout).is_err() || stream.set_write_timeout(timeout).is_err() {
        return false;
    }
    let request = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    let mut first = [0u8; 5];
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_exact(&mut first).is_ok()
        && &first == b"HTTP/"
}

/// Checks a running in-memory emulator (moto, Azurite). One that `up` started is
/// stopped so that `up` starts it afresh: every test run then begins with an empty
/// store, and a long-lived Azurite was seen to slow down and finally hang at 100% CPU
/// after many runs. One that something else started is used as it is, if it answers
/// HTTP. Returns whether a usable server is running.
fn alive(name: &str, process: &str, port: u16) -> Result<bool, String> {
    let dir = scratch().join(name);
    let ours = dir.join("started-by-xtask").exists();
    if ours && let Ok(pid) = std::fs::read_to_string(dir.join(format!("{process}.pid"))) {
        eprintln!(
            "{name}: restarting the server xtask started (pid {}) with an empty store",
            pid.trim()
        );
        run(Command::new("kill").args(["-9", pid.trim()])).ok();
        std::fs::remove_file(dir.join("started-by-xtask")).ok();
        let started = Instant::now();
        while reachable(port) && started.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    if !reachable(port) {
        return Ok(false);
    }
    if answers_http(port) {
        eprintln!("{name}: running on 127.0.0.1:{port}");
        return Ok(true);
    }
    Err(format!(
        "{name}: something listens on 127.0.0.1:{port} but does not answer HTTP; stop it and run `cargo xtask services up` again"
    ))
}

fn s3_up(install: bool) -> Result<(), String> {
    if alive("s3", "moto", S3_PORT)? {
        return Ok(());
    }
    let root = scratch();
    if !venv_ready() {
        if !install {
            return Err(format!(
                "the S3 server (moto) is not running and not installed in {}: run `cargo xtask services up --install`",
                root.join("venv").display()
            ));
        }
        venv_install(PYTHON_PACKAGES)?;
    }
    let dir = root.join("s3");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let launcher = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/moto_server.py");
    spawn_logged(
        Command::new(venv_python())
            .arg(launcher)
            .args(["127.0.0.1", &S3_PORT.to_string()]),
        &dir,
        "moto",
    )?;
    wait_for(S3_PORT, "the moto S3 server")?;
    eprintln!(
        "s3: moto started (log in {})",
        dir.join("moto.log").display()
    );
    Ok(())
}

fn azurite_up(install: bool) -> Result<(), String> {
    if alive("azurite", "azurite", AZURE_PORT)? {
        return Ok(());
    }
    let dir = scratch().join("azurite");
    let bin = dir.join("node_modules/.bin/azurite-blob");
    if !bin.exists() {
        if !install {
            return Err(format!(
                "Azurite is not running and not installed in {}: run `cargo xtask services up --install`",
                dir.display()
            ));
        }
        if which("npm").is_none() {
            apt_install(&["nodejs", "npm"])?;
        }
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        run(Command::new("npm")
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                AZURITE_PACKAGE,
            ])
            .current_dir(&dir))?;
    }
    spawn_logged(
        Command::new(bin)
            .args([
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                &AZURE_PORT.to_string(),
            ])
            // In memory (Azurite refuses --location with it); the SDK speaks a newer
            // API version than Azurite may know. Node closes a connection idle for 5 s by
            // default, which races a client's reuse of it on a busy machine (a CI run
            // failed a cleanup with "connection reset by peer"); 60 s removes the race.
            .args([
                "--inMemoryPersistence",
                "--disableTelemetry",
                "--skipApiVersionCheck",
                "--blobKeepAliveTimeout",
                "60",
            ]),
        &dir,
        "azurite",
    )?;
    wait_for(AZURE_PORT, "Azurite")?;
    eprintln!(
        "azure: Azurite started (log in {})",
        dir.join("azurite.log").display()
    );
    Ok(())
}

/// The other servers the test suite uses: `redis-server` for the outage test, which
/// runs its own instance on a free port.
fn tools_up(install: bool) -> Result<(), String> {
    if which("redis-server").is_none() && install {
        apt_install(&["redis-server"])?;
    }
    // webdis, the HTTP front of Redis, is what `cargo xtask bench proxy` compares muxd to.
    if which("webdis").is_none() && install {
        apt_install(&["webdis"])?;
    }
    // The ScyllaDB driver's TLS links the system OpenSSL (openssl-sys finds it with
    // pkg-config), so building the workspace needs its headers.
    let have_openssl = Command::new("pkg-config")
        .args(["--exists", "openssl"])
        .status()
        .is_ok_and(|s| s.success());
    if !have_openssl && install {
        apt_install(&["libssl-dev", "pkg-config"])?;
    }
    // Headless Chromium drives the status page's browser test (crates/muxd/tests/ui.rs).
    if which("chromium").is_none() && install {
        apt_install(&["chromium"])?;
    }
    deploy_tools_up(install)?;
    Ok(())
}

/// The validators of `deploy/` (crates/muxd/tests/deploy.rs): `promtool` (Debian's
/// `prometheus`) for the alerting rules, `kubernetes-validate` in the venv for the
/// manifests; and schemathesis in the venv, which fuzzes the REST API from its OpenAPI
/// document (crates/muxd/tests/schemathesis.rs). Checked here on their own: `s3_up`
/// returns early when moto already runs.
fn deploy_tools_up(install: bool) -> Result<(), String> {
    if which("promtool").is_none() && install {
        apt_install(&["prometheus"])?;
    }
    if !venv_has("kubernetes_validate") && install {
        venv_install(&["kubernetes-validate"])?;
    }
    if !venv_has("schemathesis") && install {
        venv_install(&["schemathesis>=4,<5"])?;
    }
    Ok(())
}

/// Makes the services venv (under the scratch directory) if it is missing and
/// pip-installs `packages` into it.
fn venv_install(packages: &[&str]) -> Result<(), String> {
    let root = scratch();
    if !venv_python().exists() {
        let python = which("python3").ok_or("python3 is needed for the services venv")?;
        std::fs::create_dir_all(&root)
            .map_err(|e| format!("cannot create {}: {e}", root.display()))?;
        run(Command::new(python)
            .args(["-m", "venv"])
            .arg(root.join("venv")))?;
    }
    run(Command::new(venv_python())
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(packages))
}

/// Whether the venv's Python can import `module`.
fn venv_has(module: &str) -> bool {
    Command::new(venv_python())
        .args(["-c", &format!("import {module}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub fn up(install: bool) -> Result<(), String> {
    postgres_up(install)?;
    mysql::up(install)?;
    redis_up(install)?;
    s3_up(install)?;
    azurite_up(install)?;
    influx::up(install)?;
    tools_up(install)?;
    print_urls();
    Ok(())
}

pub fn down() -> Result<(), String> {
    let dir = scratch();
    if dir.join("postgres/started-by-xtask").exists()
        && let Some(bin) = postgres_bin()
    {
        let data = dir.join("postgres/data");
        run(&mut as_postgres(
            &bin.join("pg_ctl"),
            &["-D", data.to_str().unwrap(), "-m", "fast", "-w", "stop"],
        ))?;
        std::fs::remove_file(dir.join("postgres/started-by-xtask")).ok();
    }
    if dir.join("redis/started-by-xtask").exists() {
        run(Command::new("redis-cli").args(["-p", "6379", "shutdown", "nosave"])).ok();
        std::fs::remove_file(dir.join("redis/started-by-xtask")).ok();
    }
    mysql::down(&dir);
    influx::down(&dir);
    for (name, process) in [("s3", "moto"), ("azurite", "azurite")] {
        let sub = dir.join(name);
        if sub.join("started-by-xtask").exists() {
            if let Ok(pid) = std::fs::read_to_string(sub.join(format!("{process}.pid"))) {
                run(Command::new("kill").arg(pid.trim())).ok();
            }
            std::fs::remove_file(sub.join("started-by-xtask")).ok();
        }
    }
    eprintln!("services started by xtask are stopped (others were left alone)");
    Ok(())
}

pub fn status() -> Result<(), String> {
    for (name, port) in [
        ("postgres", 5432),
        ("mysql", mysql::MYSQL_PORT),
        ("redis", 6379),
        ("s3", S3_PORT),
        ("azurite", AZURE_PORT),
        ("influxdb", influx::INFLUX_PORT),
    ] {
        let state = if reachable(port) {
            "running"
        } else {
            "not running"
        };
        let ours = scratch().join(name).join("started-by-xtask").exists();
        eprintln!(
            "{name:<9} 127.0.0.1:{port}  {state}{}",
            if ours { " (started by xtask)" } else { "" }
        );
    }
    print_urls();
    Ok(())
}

fn print_urls() {
    println!("MUX_POSTGRES_URL={POSTGRES_URL}");
    println!("MUX_MYSQL_URL={}", mysql::MYSQL_URL);
    println!("MUX_REDIS_URL={REDIS_URL}");
    println!("MUX_S3_ENDPOINT={S3_ENDPOINT}");
    println!("MUX_SSM_ENDPOINT={S3_ENDPOINT}");
    println!("MUX_AZURE_CONNECTION_STRING={}", azure_connection_string());
    println!("MUX_INFLUX_URL={}", influx::INFLUX_URL);
    println!("MUX_PYTHON={}", venv_python().display());
    println!(
        "MUX_AZURITE_BIN={}",
        scratch()
            .join("azurite/node_modules/.bin/azurite-blob")
            .display()
    );
}

/// The connection string of Azurite's development account.
pub fn azure_connection_string() -> String {
    format!(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_KEY};BlobEndpoint={AZURE_BLOB_ENDPOINT};"
    )
}
