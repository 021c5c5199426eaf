//! InfluxDB 1.x for the `influx` backend: found on 127.0.0.1:8086, or started from the
//! installed `influxd` in `<scratch>/influxdb` (with `--install`: Debian's `influxdb`
//! first) with a generated config — everything bound to 127.0.0.1, the meta, data and
//! WAL directories in the scratch directory, usage reporting and the `_internal`
//! monitor off. The system service (`/etc/influxdb`, `/var/lib/influxdb`) is not used.

use std::path::Path;
use std::process::Command;

use super::{apt_install, reachable, run, scratch, spawn_logged, wait_for, which};

pub const INFLUX_URL: &str = "http://127.0.0.1:8086";
pub const INFLUX_PORT: u16 = 8086;

/// The config of a server xtask starts, with its directories under `dir`.
pub fn config(dir: &Path) -> String {
    let d = dir.display();
    format!(
        r#"# Written by `cargo xtask services up`: a test server on 127.0.0.1 only.
reporting-disabled = true
bind-address = "127.0.0.1:8088"

[meta]
  dir = "{d}/meta"

[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  query-log-enabled = false
  # Tests make many keys (each a series); production keeps the defaults.
  max-series-per-database = 0
  max-values-per-tag = 0

[monitor]
  store-enabled = false

[http]
  bind-address = "127.0.0.1:{INFLUX_PORT}"
  log-enabled = false
"#
    )
}

pub fn up(install: bool) -> Result<(), String> {
    if reachable(INFLUX_PORT) {
        eprintln!("influx: running on 127.0.0.1:{INFLUX_PORT}");
        return Ok(());
    }
    if which("influxd").is_none() {
        if !install {
            return Err(
                "InfluxDB is not running and not installed: run `cargo xtask services up --install`"
                    .into(),
            );
        }
        // Debian's package ships 1.x (`influxd`, the `influx` CLI in influxdb-client).
        apt_install(&["influxdb", "influxdb-client"])?;
        if reachable(INFLUX_PORT) {
            eprintln!("influx: the installed server runs on 127.0.0.1:{INFLUX_PORT}");
            return Ok(());
        }
    }
    let dir = scratch().join("influxdb");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let conf = dir.join("influxdb.conf");
    std::fs::write(&conf, config(&dir))
        .map_err(|e| format!("cannot write {}: {e}", conf.display()))?;
    spawn_logged(
        Command::new("influxd").arg("-config").arg(&conf),
        &dir,
        "influxd",
    )?;
    wait_for(INFLUX_PORT, "influxd")?;
    eprintln!("influx: InfluxDB started (data in {})", dir.display());
    Ok(())
}

pub fn down(dir: &Path) {
    let sub = dir.join("influxdb");
    if !sub.join("started-by-xtask").exists() {
        return;
    }
    if let Ok(pid) = std::fs::read_to_string(sub.join("influxd.pid")) {
        run(Command::new("kill").arg(pid.trim())).ok();
    }
    std::fs::remove_file(sub.join("started-by-xtask")).ok();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_binds_loopback_only_and_keeps_data_in_the_scratch_dir() {
        let c = config(Path::new("/scratch/influxdb"));
        assert!(c.contains("bind-address = \"127.0.0.1:8086\""), "{c}");
        assert!(c.contains("bind-address = \"127.0.0.1:8088\""), "{c}");
        assert!(c.contains("reporting-disabled = true"), "{c}");
        for d in ["meta", "data", "wal"] {
            assert!(
                c.contains(&format!("\"/scratch/influxdb/{d}\"")),
                "{d}: {c}"
            );
        }
        assert!(!c.contains("/var/lib/influxdb"), "{c}");
    }
}
