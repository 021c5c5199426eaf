//! The conformance fault mode for mux's own backends: a networked store is reached
//! through a fault proxy ([`mux_conformance::Faults::proxy`]); an in-process one is
//! wrapped from above by the suite.

use mux::{BackendSpec, Error};
use mux_conformance::Faults;

use crate::{TestBackend, Unavailable, backend, open_spec, spec};

/// The spec field naming a networked store's server, and the `host:port` in it
/// (`url`, `endpoint`, or the `BlobEndpoint` of an Azure connection string).
pub fn server_of(spec: &BackendSpec) -> Option<(&'static str, String)> {
    ["url", "endpoint", "connection_string"]
        .into_iter()
        .find_map(|field| {
            let value = spec.fields.get(field)?.as_str()?;
            Some((field, authority(value)?.to_owned()))
        })
}

/// The `host:port` of the (first, or the Blob) endpoint URL in `value`.
fn authority(value: &str) -> Option<&str> {
    let url = match value.find("BlobEndpoint=") {
        Some(at) => &value[at + "BlobEndpoint=".len()..],
        None => value,
    };
    let rest = &url[url.find("://")? + 3..];
    let end = rest.find(['/', '?', ';']).unwrap_or(rest.len());
    let host_port = &rest[..end];
    let host_port = host_port.rsplit('@').next()?;
    host_port.contains(':').then_some(host_port)
}

/// The backend `name` for the fault mode: networked stores through a fault proxy
/// driven by `faults`, the others as [`backend`] builds them.
pub async fn backend_under_faults(
    name: &str,
    faults: &Faults,
) -> std::result::Result<TestBackend, Unavailable> {
    let Some(spec) = spec(name, std::path::Path::new(".")).filter(|s| server_of(s).is_some())
    else {
        return backend(name).await;
    };
    // The store must be reachable directly first: an unreachable one is a skip.
    drop(backend(name).await?);
    let (field, upstream) = server_of(&spec).expect("checked above");
    let proxy = faults
        .proxy(&upstream)
        .await
        .map_err(|e| Unavailable::Error(Error::from(e)))?;
    let value = spec.fields[field].as_str().unwrap_or_default();
    let through = value.replacen(&upstream, &proxy.to_string(), 1);
    open_spec(&spec.clone().with(field, through), None).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_server_of_each_kind_of_spec() {
        let of = |field: &str, value: &str| {
            server_of(&BackendSpec::new("b", "k").with(field, value)).map(|(_, a)| a)
        };
        assert_eq!(
            of("url", "postgres://postgres@127.0.0.1:5432/postgres").as_deref(),
            Some("127.0.0.1:5432")
        );
        assert_eq!(
            of("url", "redis://127.0.0.1:6379").as_deref(),
            Some("127.0.0.1:6379")
        );
        assert_eq!(
            of("endpoint", "http://127.0.0.1:4566").as_deref(),
            Some("127.0.0.1:4566")
        );
        assert_eq!(
            of(
                "connection_string",
                "DefaultEndpointsProtocol=http;AccountName=a;AccountKey=k;BlobEndpoint=http://127.0.0.1:10000/a;"
            )
            .as_deref(),
            Some("127.0.0.1:10000")
        );
        assert_eq!(of("url", "redis://localhost"), None);
        assert_eq!(of("path", "/tmp/x"), None);
    }
}
