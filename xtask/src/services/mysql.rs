//! MariaDB for the `mysql` backend: found on 127.0.0.1:3306, or started from the
//! installed `mariadbd` in `<scratch>/mysql` (with `--install`: Debian's
//! `mariadb-server` first). A server xtask starts has a passwordless `root` and the
//! database `test`, binds 127.0.0.1 only, and offers TLS with the snakeoil certificate
//! when it exists.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{apt_install, is_root, reachable, run, scratch, spawn_logged, wait_for, which};

pub const MYSQL_URL: &str = "mysql://root@127.0.0.1:3306/test";
pub const MYSQL_PORT: u16 = 3306;

/// An installed program, from PATH or the sbin directories (Debian's `mariadbd`).
fn program(name: &str) -> Option<PathBuf> {
    which(name).or_else(|| {
        ["/usr/sbin", "/usr/local/sbin"]
            .iter()
            .map(|d| Path::new(d).join(name))
            .find(|p| p.is_file())
    })
}

/// The client, to make sure the database `test` exists (best effort: a server run by
/// someone else may refuse it, and tests then say what is missing).
fn create_test_database() {
    let Some(client) = program("mariadb").or_else(|| program("mysql")) else {
        eprintln!("mysql: no mariadb client found; not checking the database `test`");
        return;
    };
    let ok = Command::new(client)
        .args([
            "--protocol=TCP",
            "--host=127.0.0.1",
            "--port=3306",
            "--user=root",
        ])
        .args(["-e", "CREATE DATABASE IF NOT EXISTS test"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!(
            "mysql: could not make sure the database `test` exists as root without a password; set MUX_MYSQL_URL to a database the tests may use"
        );
    }
}

pub fn up(install: bool) -> Result<(), String> {
    if reachable(MYSQL_PORT) {
        eprintln!("mysql: running on 127.0.0.1:{MYSQL_PORT}");
        create_test_database();
        return Ok(());
    }
    if program("mariadbd").is_none() || program("mariadb-install-db").is_none() {
        if !install {
            return Err(
                "MariaDB is not running and not installed: run `cargo xtask services up --install`"
                    .into(),
            );
        }
        apt_install(&["mariadb-server", "mariadb-client", "ssl-cert"])?;
        // The package may have started its own server.
        if reachable(MYSQL_PORT) {
            eprintln!("mysql: the installed server runs on 127.0.0.1:{MYSQL_PORT}");
            create_test_database();
            return Ok(());
        }
    }
    let mariadbd =
        program("mariadbd").ok_or("mariadb-server was installed but mariadbd is not found")?;
    let install_db = program("mariadb-install-db").ok_or("mariadb-install-db is not found")?;
    let dir = scratch().join("mysql");
    let data = dir.join("data");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let user = if is_root() {
        vec!["--user=root"]
    } else {
        Vec::new()
    };
    if !data.join("mysql").exists() {
        run(Command::new(install_db)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg("--auth-root-authentication-method=normal")
            .args(&user)
            .stdout(Stdio::null()))?;
    }
    let (cert, key) = (
        "/etc/ssl/certs/ssl-cert-snakeoil.pem",
        "/etc/ssl/private/ssl-cert-snakeoil.key",
    );
    let mut cmd = Command::new(mariadbd);
    cmd.arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--socket={}", dir.join("mysqld.sock").display()))
        .arg(format!("--pid-file={}", dir.join("mariadbd.pid").display()))
        .arg(format!("--log-error={}", dir.join("error.log").display()))
        .arg(format!("--port={MYSQL_PORT}"))
        .args(["--bind-address=127.0.0.1", "--skip-log-bin"])
        .args([
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_general_ci",
        ])
        .args(&user);
    if Path::new(cert).exists() && Path::new(key).exists() {
        cmd.arg(format!("--ssl-cert={cert}"))
            .arg(format!("--ssl-key={key}"));
    }
    spawn_logged(&mut cmd, &dir, "mariadbd-console")?;
    wait_for(MYSQL_PORT, "mariadbd")?;
    create_test_database();
    eprintln!("mysql: MariaDB started (data in {})", data.display());
    Ok(())
}

pub fn down(dir: &Path) {
    let sub = dir.join("mysql");
    if !sub.join("started-by-xtask").exists() {
        return;
    }
    // The server's own pid file (spawn_logged's records the same process).
    for pid_file in ["mariadbd.pid", "mariadbd-console.pid"] {
        if let Ok(pid) = std::fs::read_to_string(sub.join(pid_file)) {
            run(Command::new("kill").arg(pid.trim())).ok();
            break;
        }
    }
    std::fs::remove_file(sub.join("started-by-xtask")).ok();
}
