//! A `muxd` process started from the built binary, for the multi-process tests.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// One `muxd` process; killed (and reaped) when dropped.
pub struct Node {
    /// Its name in the output echoed.
    pub name: String,
    /// The process.
    pub child: Child,
    /// The REST address.
    pub addr: SocketAddr,
    /// The gRPC address.
    pub grpc: SocketAddr,
}

impl Node {
    /// Writes `config` to `<dir>/<name>.toml`, starts `muxd --config` on it and waits
    /// (at most 20 s) for the line with its addresses. Its output is echoed to stderr.
    pub fn spawn(dir: &Path, name: &str, config: &str) -> Node {
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_muxd"))
            .arg("--config")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start muxd");
        let (tx, rx) = mpsc::channel::<String>();
        let out = BufReader::new(child.stdout.take().unwrap());
        let err = BufReader::new(child.stderr.take().unwrap());
        for lines in [
            Box::new(out.lines()) as Box<dyn Iterator<Item = std::io::Result<String>> + Send>,
            Box::new(err.lines()),
        ] {
            let (tx, name) = (tx.clone(), name.to_owned());
            std::thread::spawn(move || {
                for line in lines.map_while(Result::ok) {
                    eprintln!("[{name}] {line}");
                    let _ = tx.send(line);
                }
            });
        }
        drop(tx);
        let unbound = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut node = Node {
            name: name.to_owned(),
            child,
            addr: unbound,
            grpc: unbound,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => match parse_listening(&line) {
                    Some((addr, grpc)) => {
                        (node.addr, node.grpc) = (addr, grpc);
                        return node;
                    }
                    None => seen.push(line),
                },
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("{name}: no \"muxd listening\" line within 20 s; output: {seen:?}")
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!(
                    "{name}: muxd exited ({:?}) before listening; output: {seen:?}",
                    node.child.wait()
                ),
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        eprintln!("[{}] killed", self.name);
    }
}

/// `muxd listening on http://A (gRPC http://B)` → (A, B).
fn parse_listening(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    // A log line: the message follows the timestamp, level and target.
    let at = line.find("muxd listening on http://")?;
    let rest = &line[at + "muxd listening on http://".len()..];
    let (rest, grpc) = rest.split_once(" (gRPC http://")?;
    let grpc = &grpc[..grpc.find(')')?];
    Some((rest.parse().ok()?, grpc.parse().ok()?))
}
