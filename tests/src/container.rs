//! `mux-conformance <backend> --container`: the store started from its image with
//! testcontainers (a Docker engine must be reachable), then the same suite.

use std::time::{Duration, Instant};

use mux::BackendSpec;
use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

use crate::faults::server_of;
use crate::{TestBackend, Unavailable, open_spec, scylla_spec, spec};

/// One store's image: name, tag, the port it serves on, environment and command.
struct Image {
    name: &'static str,
    tag: &'static str,
    port: u16,
    env: &'static [(&'static str, &'static str)],
    cmd: &'static [&'static str],
}

/// The image each networked backend runs in.
fn image(backend: &str) -> Option<Image> {
    let moto = Image {
        name: "motoserver/moto",
        tag: "5.1.4",
        port: 5000,
        env: &[],
        cmd: &[],
    };
    Some(match backend {
        "postgres" => Image {
            name: "postgres",
            tag: "16-alpine",
            port: 5432,
            env: &[("POSTGRES_HOST_AUTH_METHOD", "trust")],
            cmd: &[],
        },
        "mysql" => Image {
            name: "mariadb",
            tag: "11",
            port: 3306,
            env: &[
                ("MARIADB_ALLOW_EMPTY_ROOT_PASSWORD", "1"),
                ("MARIADB_DATABASE", "test"),
            ],
            cmd: &[],
        },
        "redis" => Image {
            name: "redis",
            tag: "7-alpine",
            port: 6379,
            env: &[],
            cmd: &[],
        },
        "s3" | "dynamodb" | "ssm" => moto,
        "azure" => Image {
            name: "mcr.microsoft.com/azure-storage/azurite",
            tag: "3.34.0",
            port: 10000,
            env: &[],
            cmd: &["azurite-blob", "--blobHost", "0.0.0.0", "--loose"],
        },
        "influx" => Image {
            name: "influxdb",
            tag: "1.8",
            port: 8086,
            env: &[],
            cmd: &[],
        },
        "scylla" => Image {
            name: "scylladb/scylla",
            tag: "2025.1.0",
            port: 9042,
            env: &[],
            cmd: &[
                "--smp",
                "1",
                "--memory",
                "750M",
                "--overprovisioned",
                "1",
                "--developer-mode",
                "1",
            ],
        },
        _ => return None,
    })
}

/// A backend in a container, and the container (stopped and removed when dropped).
#[derive(Debug)]
pub struct Contained {
    /// The backend, connected to the container.
    pub backend: TestBackend,
    /// The container.
    pub container: ContainerAsync<GenericImage>,
}

/// Why the container mode cannot run `backend` here (no image for it, or no Docker
/// engine reachable), or the error that stopped it.
pub async fn backend_in_container(backend: &str) -> Result<Contained, Unavailable> {
    let Some(image) = image(backend) else {
        return Err(Unavailable::Skip(format!(
            "the {backend} backend runs in process: the container mode is for networked stores"
        )));
    };
    let mut request = GenericImage::new(image.name, image.tag)
        .with_exposed_port(image.port.tcp())
        .with_wait_for(WaitFor::Nothing)
        .with_startup_timeout(Duration::from_secs(240));
    if !image.cmd.is_empty() {
        request = request.with_cmd(image.cmd.iter().copied());
    }
    for (k, v) in image.env {
        request = request.with_env_var(*k, *v);
    }
    let container = match tokio::time::timeout(Duration::from_secs(300), request.start()).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            return Err(Unavailable::Skip(format!(
                "testcontainers cannot start {}:{} ({e}): the container mode needs a Docker \
                 engine (DOCKER_HOST or /var/run/docker.sock) that can pull the image",
                image.name, image.tag
            )));
        }
        Err(_) => {
            return Err(Unavailable::Skip(format!(
                "{}:{} did not start within 300 s",
                image.name, image.tag
            )));
        }
    };
    let host = container
        .get_host()
        .await
        .map_err(|e| Unavailable::Skip(format!("the container has no host: {e}")))?;
    let port = container
        .get_host_port_ipv4(image.port)
        .await
        .map_err(|e| Unavailable::Skip(format!("the container's port is not mapped: {e}")))?;
    let address = format!("{host}:{port}");
    let spec = if backend == "scylla" {
        scylla_spec(vec![address])
    } else {
        let spec = spec(backend, std::path::Path::new(".")).expect("a networked store");
        point_at(spec, &address)
    };
    // The image is up before the store in it answers: retry until it does.
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        match open_spec(&spec, None).await {
            Ok(backend) => return Ok(Contained { backend, container }),
            Err(Unavailable::Skip(why)) if Instant::now() < deadline => {
                let _ = why;
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// `spec` with its server replaced by `address`.
fn point_at(spec: BackendSpec, address: &str) -> BackendSpec {
    let Some((field, server)) = server_of(&spec) else {
        return spec;
    };
    let value = spec.fields[field].as_str().unwrap_or_default();
    let moved = value.replacen(&server, address, 1);
    spec.with(field, moved)
}
