//! TLS against a MariaDB server of the test's own: `mariadb-install-db` in a temporary
//! directory, then `mariadbd` on a free port of 127.0.0.1 with Debian's snakeoil
//! certificate (for `localhost`; package `ssl-cert`), killed when the test ends. The
//! shared server on 3306 may run without TLS, so the test does not depend on it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use mux_core::{Backend, ErrorKind, Key, Record, Version};
use mux_mysql::{MysqlBackend, MysqlConfig, TlsMode};
use mysql_async::prelude::Queryable;

const CERT: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";
const KEY: &str = "/etc/ssl/private/ssl-cert-snakeoil.key";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A program from PATH or the sbin directories (where Debian puts `mariadbd`).
fn program(names: &[&str]) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    for name in names {
        for dir in path
            .split(':')
            .chain(["/usr/sbin", "/usr/local/sbin", "/usr/bin"])
        {
            let p = Path::new(dir).join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!("{names:?} not found: install mariadb-server (cargo xtask services up --install)")
}

/// A mariadbd process, killed and reaped when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

fn start_tls_server(dir: &Path, port: u16) -> Server {
    let data = dir.join("data");
    let status = Command::new(program(&["mariadb-install-db", "mysql_install_db"]))
        .arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .args([
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--user=root",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run mariadb-install-db");
    assert!(status.success(), "mariadb-install-db failed ({status})");
    let mut child = Command::new(program(&["mariadbd", "mysqld"]))
        .arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--socket={}", dir.join("sock").display()))
        .arg(format!("--pid-file={}", dir.join("pid").display()))
        .arg(format!("--log-error={}", dir.join("error.log").display()))
        .arg(format!("--port={port}"))
        .args(["--bind-address=127.0.0.1", "--user=root"])
        .arg(format!("--ssl-cert={CERT}"))
        .arg(format!("--ssl-key={KEY}"))
        .args(["--innodb-buffer-pool-size=32M", "--skip-log-bin"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mariadbd");
    // Bounded wait for the port (at most 30 s).
    for _ in 0..300 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Server(child);
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
            panic!("mariadbd exited ({status}):\n{log}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().ok();
    child.wait().ok();
    panic!("mariadbd did not listen on port {port} within 30 s");
}

/// Connects over TLS verifying the server against the snakeoil CA, writes and reads,
/// and sees the session encrypted; the Mozilla roots refuse the snakeoil certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_connects_and_verifies_the_server() {
    assert!(
        Path::new(CERT).exists() && Path::new(KEY).exists(),
        "the snakeoil certificate is required (package ssl-cert; cargo xtask services up --install)"
    );
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = start_tls_server(dir.path(), port);
    let mut admin = mysql_async::Conn::from_url(format!("mysql://root@127.0.0.1:{port}"))
        .await
        .expect("a plain connection to the test server");
    admin
        .query_drop("CREATE DATABASE IF NOT EXISTS mux_tls")
        .await
        .unwrap();
    admin.disconnect().await.unwrap();

    // The certificate names `localhost`, so that is the host to connect to.
    let url = format!("mysql://root@localhost:{port}/mux_tls");
    let tls = TlsMode::Require {
        ca_file: Some(CERT.into()),
    };
    let backend = MysqlBackend::connect("mysql-tls", MysqlConfig::new(&url).with_tls(tls))
        .await
        .expect("a TLS connection to the test server");
    let r = Record::new(
        Key::new("tls/one").unwrap(),
        "secret",
        Version::new(1, 0, 1),
    );
    assert!(backend.put(&r).await.unwrap().is_applied());
    assert_eq!(backend.get(r.key()).await.unwrap().unwrap(), r);
    let mut conn = backend.pool().get_conn().await.unwrap();
    let cipher: Option<(String, String)> = conn
        .query_first("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        .await
        .unwrap();
    let cipher = cipher.expect("an Ssl_cipher row").1;
    assert!(!cipher.is_empty(), "the pooled connection is encrypted");
    drop(conn);

    // The Mozilla roots do not include the snakeoil certificate: refused, for good.
    let e = MysqlBackend::connect(
        "mysql-tls",
        MysqlConfig::new(&url).with_tls(TlsMode::Require { ca_file: None }),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("TLS"), "{e}");
    assert!(!e.is_temporary(), "{e}");
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");

    // A CA file that is not there is a configuration error.
    let e = MysqlBackend::connect(
        "mysql-tls",
        MysqlConfig::new(&url).with_tls(TlsMode::Require {
            ca_file: Some(dir.path().join("missing.pem")),
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.message().contains("missing.pem"), "{e}");
}
