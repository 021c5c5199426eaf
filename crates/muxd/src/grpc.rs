//! The gRPC API (`mux.v1.Store`, `proto/mux/v1/store.proto`): the REST operations plus
//! `Watch`, a server stream of changes and configuration reloads.

use std::pin::Pin;

use mux::{Key, ListRequest, Prefix, ReadOptions, Tenant, WriteOptions, WriteReport};
use tokio_stream::{Stream, StreamExt, wrappers::BroadcastStream};
use tonic::{Request, Response, Status};

use crate::auth::{Denied, Scope};
use crate::{AppState, Event};

/// The generated protobuf types, client and server (compiled once, in mux-proto).
pub use mux_proto as pb;

use pb::store_server::{Store, StoreServer};

/// The gRPC service over the shared state.
pub fn service(state: AppState) -> StoreServer<GrpcStore> {
    StoreServer::new(GrpcStore { state })
}

/// Implements `mux.v1.Store`.
#[derive(Debug)]
pub struct GrpcStore {
    state: AppState,
}

fn status(e: mux::Error) -> Status {
    use mux::ErrorKind as K;
    let code = match e.kind() {
        K::InvalidInput => tonic::Code::InvalidArgument,
        K::NotFound => tonic::Code::NotFound,
        K::Conflict => tonic::Code::Aborted,
        K::TooLarge => tonic::Code::ResourceExhausted,
        K::PermissionDenied => tonic::Code::PermissionDenied,
        K::Unsupported => tonic::Code::Unimplemented,
        K::Unavailable | K::Overloaded | K::ConsistencyNotMet => tonic::Code::Unavailable,
        K::Timeout => tonic::Code::DeadlineExceeded,
        _ => tonic::Code::Internal,
    };
    Status::new(code, e.to_string())
}

impl GrpcStore {
    /// Authenticates the call (bearer token in the `authorization` metadata) and checks
    /// the scope; returns the tenant (`None` with auth off).
    fn caller<T>(&self, request: &Request<T>, scope: Scope) -> Result<Option<Tenant>, Status> {
        let Some(verifier) = self.state.live().auth.clone() else {
            return Ok(None);
        };
        let token = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(crate::auth::bearer_token)
            .ok_or_else(|| Status::unauthenticated("missing authorization: Bearer <token>"))?;
        let identity = verifier.verify(token).map_err(|d| match d {
            Denied::Unauthenticated(m) => Status::unauthenticated(m),
            Denied::Forbidden(m) => Status::permission_denied(m),
        })?;
        if !identity.scopes.contains(&scope) {
            return Err(Status::permission_denied(format!(
                "tenant {} lacks the {} scope",
                identity.tenant,
                format!("{scope:?}").to_lowercase()
            )));
        }
        Ok(Some(identity.tenant))
    }
}

fn write_reply(report: &WriteReport) -> pb::WriteReply {
    pb::WriteReply {
        key: report.key.as_str().to_owned(),
        version: report.version.to_string(),
        backends: report
            .backends()
            .map(|b| pb::BackendOutcome {
                backend: b.backend.to_owned(),
                role: format!("{:?}", b.role).to_lowercase(),
                outcome: b.outcome.as_str().to_owned(),
                error: match b.outcome {
                    mux::WriteOutcome::Failed(e) => e.to_string(),
                    _ => String::new(),
                },
            })
            .collect(),
    }
}

/// A key from a request (the tenant's own: the coordinator stores it in the tenant's
/// namespace).
fn key_of(raw: &str) -> Result<Key, Status> {
    Key::new(raw).map_err(status)
}

fn parse_opt<T: std::str::FromStr<Err = mux::Error>>(text: &str) -> Result<Option<T>, Status> {
    if text.is_empty() {
        Ok(None)
    } else {
        text.parse().map(Some).map_err(status)
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Store for GrpcStore {
    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::WriteReply>, Status> {
        let tenant = self.caller(&request, Scope::Write)?;
        let t = tenant.as_ref();
        let req = request.into_inner();
        let key = key_of(&req.key)?;
        let options = WriteOptions {
            consistency: parse_opt(&req.consistency)?,
            tenant: tenant.clone(),
            tags: req.tags.into_iter().collect(),
            content_type: Some(req.content_type).filter(|ct| !ct.is_empty()),
            ..Default::default()
        };
        let report = self
            .state
            .mux()
            .write(key, req.value, &options)
            .await
            .map_err(status)?;
        crate::rest::publish(&self.state, t, &report, false);
        Ok(Response::new(write_reply(&report)))
    }

    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::GetReply>, Status> {
        let tenant = self.caller(&request, Scope::Read)?;
        let req = request.into_inner();
        let key = key_of(&req.key)?;
        let options = ReadOptions {
            policy: parse_opt(&req.read_policy)?,
            tenant: tenant.clone(),
            ..Default::default()
        };
        let reply = match self
            .state
            .mux()
            .get_with(&key, &options)
            .await
            .map_err(status)?
        {
            None => pb::GetReply::default(),
            Some(r) => pb::GetReply {
                found: true,
                value: r.value().to_vec(),
                version: r.version().to_string(),
                content_type: r.meta().content_type.clone().unwrap_or_default(),
                tags: r.meta().tags.clone().into_iter().collect(),
            },
        };
        Ok(Response::new(reply))
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::WriteReply>, Status> {
        let tenant = self.caller(&request, Scope::Write)?;
        let t = tenant.as_ref();
        let req = request.into_inner();
        let key = key_of(&req.key)?;
        let options = WriteOptions {
            consistency: parse_opt(&req.consistency)?,
            tenant: tenant.clone(),
            ..Default::default()
        };
        let report = self
            .state
            .mux()
            .delete(&key, &options)
            .await
            .map_err(status)?;
        crate::rest::publish(&self.state, t, &report, true);
        Ok(Response::new(write_reply(&report)))
    }

    async fn list(
        &self,
        request: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListReply>, Status> {
        let tenant = self.caller(&request, Scope::Read)?;
        let req = request.into_inner();
        let prefix = Prefix::new(&req.prefix).map_err(status)?;
        let mut list = ListRequest::new(prefix);
        if !req.cursor.is_empty() {
            list.cursor = Some(key_of(&req.cursor)?);
        }
        if req.limit > 0 {
            list.limit = req.limit as usize;
        }
        let options = ReadOptions {
            tenant: tenant.clone(),
            ..Default::default()
        };
        let page = self
            .state
            .mux()
            .list(&list, &options)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListReply {
            entries: page
                .entries
                .iter()
                .map(|e| pb::Entry {
                    key: e.key.as_str().to_owned(),
                    version: e.meta.version.to_string(),
                    size: e.size,
                })
                .collect(),
            next_cursor: page
                .next_cursor
                .map(|c| c.as_str().to_owned())
                .unwrap_or_default(),
        }))
    }

    type WatchStream = WatchStream;

    /// Pushes the changes under the prefix that go through this server (REST or gRPC),
    /// and every configuration reload. Only the caller's tenant's changes are sent.
    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let tenant = self.caller(&request, Scope::Read)?;
        let prefix = Prefix::new(&request.into_inner().prefix).map_err(status)?;
        let events = BroadcastStream::new(self.state.events.subscribe());
        let stream = events.filter_map(move |event| match event {
            Ok(Event::Change {
                tenant: t,
                key,
                version,
                deleted,
            }) if t.as_deref() == tenant.as_ref().map(Tenant::as_str) && prefix.matches(&key) => {
                Some(Ok(pb::WatchEvent {
                    event: Some(pb::watch_event::Event::Change(pb::Change {
                        key,
                        version: version.to_string(),
                        op: if deleted {
                            pb::change::Op::Delete
                        } else {
                            pb::change::Op::Put
                        } as i32,
                    })),
                }))
            }
            Ok(Event::Config { reason }) => Some(Ok(pb::WatchEvent {
                event: Some(pb::watch_event::Event::Config(pb::ConfigChange { reason })),
            })),
            Ok(_) => None,
            Err(lagged) => Some(Err(Status::data_loss(format!(
                "watcher fell behind: {lagged}"
            )))),
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
