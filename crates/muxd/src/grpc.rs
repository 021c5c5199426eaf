//! The gRPC API (`mux.v1.Store`, `proto/mux/v1/store.proto`): the REST operations plus
//! `Watch`, a server stream of changes and configuration reloads.

use std::pin::Pin;

use tokio_stream::{Stream, StreamExt, wrappers::ReceiverStream};
use tonic::{Request, Response, Status};

use crate::AppState;
use crate::auth::{Identity, Principal, Scope};
use crate::service::history::{HistoryInput, version_time};
use crate::service::watch::WatchItem;
use crate::service::{Failure, ListInput, Options, Service, ServiceError, WriteReply};

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

/// A service error as a gRPC status (the same message REST puts in its JSON body).
fn status(e: ServiceError) -> Status {
    use mux::ErrorKind as K;
    let code = match e.failure() {
        Failure::Unauthenticated => tonic::Code::Unauthenticated,
        Failure::Forbidden => tonic::Code::PermissionDenied,
        Failure::MethodNotAllowed => tonic::Code::Unimplemented,
        Failure::NoRoute => tonic::Code::NotFound,
        Failure::Quota(_) => tonic::Code::ResourceExhausted,
        Failure::Mux(kind) => match kind {
            K::InvalidInput => tonic::Code::InvalidArgument,
            K::NotFound => tonic::Code::NotFound,
            K::Conflict => tonic::Code::Aborted,
            K::TooLarge => tonic::Code::ResourceExhausted,
            K::PermissionDenied => tonic::Code::PermissionDenied,
            K::Unsupported => tonic::Code::Unimplemented,
            K::Unavailable | K::Overloaded | K::ConsistencyNotMet => tonic::Code::Unavailable,
            K::Timeout => tonic::Code::DeadlineExceeded,
            K::Gone => tonic::Code::OutOfRange,
            _ => tonic::Code::Internal,
        },
    };
    Status::new(code, e.message())
}

impl GrpcStore {
    /// Authenticates the call (bearer token in the `authorization` metadata) and checks
    /// the scope; returns the service acting for the caller's tenant.
    fn service<T>(&self, request: &Request<T>, scope: Scope) -> Result<Service<'_>, Status> {
        let identity = self.identity(request)?;
        Service::authorize(&self.state, identity.as_ref(), scope).map_err(status)
    }

    /// The caller (`None` with auth off).
    fn identity<T>(&self, request: &Request<T>) -> Result<Option<Identity>, Status> {
        let token = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(crate::auth::bearer_token);
        let cert = request
            .extensions()
            .get::<crate::tls::Peer>()
            .and_then(|p| p.cert_name.as_deref());
        match crate::auth::principal(&self.state.live(), token, cert) {
            Ok(Principal::Local) => Ok(None),
            Ok(Principal::Tenant(identity)) => Ok(Some(identity)),
            Ok(Principal::Operator { .. }) => Err(Status::permission_denied(
                "an operator credential names no tenant; the gRPC API serves tenants",
            )),
            Err(d) => Err(status(d.into())),
        }
    }
}

fn write_reply(reply: WriteReply, found: bool) -> pb::WriteReply {
    pb::WriteReply {
        key: reply.key,
        version: reply.version,
        backends: reply
            .backends
            .into_iter()
            .map(|b| pb::BackendOutcome {
                backend: b.backend,
                role: b.role,
                outcome: b.outcome,
                error: b.error.map(|e| e.message).unwrap_or_default(),
            })
            .collect(),
        found,
        consistency: reply.consistency,
        applied_on: reply.applied_on,
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Store for GrpcStore {
    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::WriteReply>, Status> {
        let service = self.service(&request, Scope::Write)?;
        let req = request.into_inner();
        let options = Options {
            consistency: Some(&req.consistency),
            tags: req.tags.into_iter().collect(),
            content_type: Some(&req.content_type),
            ..Default::default()
        };
        let reply = service
            .put(&req.key, req.value.into(), &options)
            .await
            .map_err(status)?;
        Ok(Response::new(write_reply(reply, true)))
    }

    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::GetReply>, Status> {
        let service = self.service(&request, Scope::Read)?;
        let req = request.into_inner();
        let options = Options {
            read_policy: Some(&req.read_policy),
            tags: req.tags.into_iter().collect(),
            ..Default::default()
        };
        let record = match req.as_of.as_str() {
            "" => service.get(&req.key, &options).await,
            at => service.get_as_of(&req.key, at, &options).await,
        };
        let reply = match record.map_err(status)? {
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
        let service = self.service(&request, Scope::Write)?;
        let req = request.into_inner();
        let options = Options {
            consistency: Some(&req.consistency),
            read_policy: Some(&req.read_policy),
            tags: req.tags.into_iter().collect(),
            ..Default::default()
        };
        let deleted = service.delete(&req.key, &options).await.map_err(status)?;
        Ok(Response::new(write_reply(deleted.reply, deleted.found)))
    }

    async fn list(
        &self,
        request: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListReply>, Status> {
        let service = self.service(&request, Scope::Read)?;
        let req = request.into_inner();
        let input = ListInput {
            prefix: &req.prefix,
            cursor: Some(&req.cursor),
            limit: Some(u64::from(req.limit)).filter(|l| *l > 0),
        };
        let options = Options {
            read_policy: Some(&req.read_policy),
            tags: req.tags.into_iter().collect(),
            ..Default::default()
        };
        let page = service.list(&input, &options).await.map_err(status)?;
        Ok(Response::new(pb::ListReply {
            entries: page
                .entries
                .into_iter()
                .map(|e| pb::Entry {
                    key: e.key,
                    version: e.version,
                    size: e.size,
                    content_type: e.content_type.unwrap_or_default(),
                    tags: e.tags.into_iter().collect(),
                })
                .collect(),
            next_cursor: page.next_cursor.unwrap_or_default(),
        }))
    }

    async fn history(
        &self,
        request: Request<pb::HistoryRequest>,
    ) -> Result<Response<pb::HistoryReply>, Status> {
        let service = self.service(&request, Scope::Read)?;
        let req = request.into_inner();
        let input = HistoryInput {
            key: &req.key,
            cursor: Some(&req.cursor),
            limit: Some(u64::from(req.limit)).filter(|l| *l > 0),
        };
        let options = Options {
            tags: req.tags.into_iter().collect(),
            ..Default::default()
        };
        let page = service.history(&input, &options).await.map_err(status)?;
        Ok(Response::new(pb::HistoryReply {
            key: req.key,
            entries: page
                .entries
                .into_iter()
                .map(|r| pb::HistoryEntry {
                    version: r.version().to_string(),
                    time: version_time(r.version()),
                    deleted: r.is_tombstone(),
                    value: r.value().to_vec(),
                    content_type: r.meta().content_type.clone().unwrap_or_default(),
                    tags: r.meta().tags.clone().into_iter().collect(),
                })
                .collect(),
            next_cursor: page.next_cursor.map(|v| v.to_string()).unwrap_or_default(),
        }))
    }

    type WatchStream = WatchStream;

    /// Pushes the changes under the prefix, made through any node sharing the change
    /// feed, from `resume_from` (none missed, none twice) or from now, and every
    /// configuration reload of this node. Only the caller's tenant's changes are sent.
    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let service = self.service(&request, Scope::Read)?;
        let input = request.get_ref();
        let items = service
            .watch(&input.prefix, Some(&input.resume_from))
            .await
            .map_err(status)?;
        let stream = ReceiverStream::new(items).map(|item| match item {
            Ok(WatchItem::Change(c)) => Ok(pb::WatchEvent {
                event: Some(pb::watch_event::Event::Change(pb::Change {
                    op: if c.op == "delete" {
                        pb::change::Op::Delete
                    } else {
                        pb::change::Op::Put
                    } as i32,
                    key: c.key,
                    version: c.version,
                    position: c.position,
                })),
            }),
            Ok(WatchItem::Config(reason)) => Ok(pb::WatchEvent {
                event: Some(pb::watch_event::Event::Config(pb::ConfigChange { reason })),
            }),
            Err(e) => Err(status(e)),
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
