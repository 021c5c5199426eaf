//! `mux watch`: the gRPC `mux.v1.Store/Watch` stream, one line per event.

use mux_proto::store_client::StoreClient;
use mux_proto::{WatchRequest, change, watch_event};
use tonic::Code;
use tonic::metadata::MetadataValue;

use crate::error::{CliError, chain};
use crate::output;

/// A gRPC status as the error a user expects.
fn status_error(endpoint: &str, status: &tonic::Status) -> CliError {
    let message = status.message();
    match status.code() {
        Code::Unauthenticated => CliError::Refused(format!(
            "not authorised: {message} (pass a valid token with --token or MUX_TOKEN)"
        )),
        Code::PermissionDenied => CliError::Refused(format!(
            "not authorised: {message} (the token does not allow this)"
        )),
        Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => {
            CliError::Refused(message.to_owned())
        }
        code => CliError::Failed(format!(
            "watch on {endpoint}: {code:?}: {message} (is --grpc a muxd gRPC endpoint?)"
        )),
    }
}

/// Prints `put|delete <key> <version> <position>` and `config <reason>` lines until the
/// server ends the stream (an error: a watcher expects to run until interrupted).
pub async fn watch(
    endpoint: &str,
    token: Option<&str>,
    tls: &crate::api::Tls,
    prefix: String,
    resume_from: Option<String>,
) -> Result<(), CliError> {
    let unreachable = |e: tonic::transport::Error| {
        CliError::Failed(format!(
            "cannot reach the gRPC endpoint {endpoint}: {} (set --grpc or MUX_GRPC{})",
            chain(&e),
            if endpoint.starts_with("https://") {
                "; for TLS, --ca-file and --client-cert/--client-key"
            } else {
                ""
            }
        ))
    };
    let mut client = match endpoint.strip_prefix("https://") {
        None => StoreClient::connect(endpoint.to_owned())
            .await
            .map_err(unreachable)?,
        Some(rest) => {
            let authority = rest.split('/').next().unwrap_or(rest).to_owned();
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{authority}"))
                .map_err(|e| CliError::Usage(format!("--grpc \"{endpoint}\": {e}")))?
                .connect_with_connector(tls.connector(&authority)?)
                .await
                .map_err(unreachable)?;
            StoreClient::new(channel)
        }
    };
    let mut request = tonic::Request::new(WatchRequest {
        prefix,
        resume_from: resume_from.unwrap_or_default(),
    });
    if let Some(token) = token {
        let value: MetadataValue<_> = format!("Bearer {token}").parse().map_err(|_| {
            CliError::Usage(
                "the token (--token or MUX_TOKEN) has characters a header cannot carry".into(),
            )
        })?;
        request.metadata_mut().insert("authorization", value);
    }
    let mut stream = client
        .watch(request)
        .await
        .map_err(|s| status_error(endpoint, &s))?
        .into_inner();
    while let Some(event) = stream
        .message()
        .await
        .map_err(|s| status_error(endpoint, &s))?
    {
        match event.event {
            Some(watch_event::Event::Change(c)) => {
                let op = match change::Op::try_from(c.op) {
                    Ok(change::Op::Delete) => "delete",
                    Ok(change::Op::Put) => "put",
                    Err(_) => "unknown-op",
                };
                output::line(format_args!(
                    "{op}\t{}\t{}\t{}",
                    c.key, c.version, c.position
                ))?;
            }
            Some(watch_event::Event::Config(c)) => {
                output::line(format_args!("config\t{}", c.reason))?;
            }
            None => {}
        }
    }
    Err(CliError::Failed(format!(
        "the server at {endpoint} ended the watch stream"
    )))
}
