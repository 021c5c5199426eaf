//! `GET /v1/watch`: the changes under a prefix as Server-Sent Events, the REST
//! equivalent of gRPC `Watch`, resumable with `resume_from` or `Last-Event-ID`.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use crate::AppState;
use crate::auth::{Identity, Scope};
use crate::service::watch::WatchItem;
use crate::service::{Service, ServiceError, http};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WatchQuery {
    #[serde(default)]
    prefix: String,
    resume_from: Option<String>,
}

/// Each change is an event `change` whose `id` is its feed position and whose data is
/// a `WatchChange` (JSON); a reload is an event `config`; a stream that fell out of the
/// feed's retention ends with an event `error` (an `ErrorBody`, kind `gone`).
#[utoipa::path(get, path = "/v1/watch",
    params(("prefix" = Option<String>, Query, nullable = false, description = "Only keys under this prefix (whole segments)"),
           ("resume_from" = Option<String>, Query, nullable = false, description = "The position of the last event seen (its `id`): the stream starts after it, none missed, none twice. `Last-Event-ID` does the same"),
           ("last-event-id" = Option<String>, Header, nullable = false, description = "Set by EventSource clients on reconnect; `resume_from` wins")),
    responses((status = 200, description = "An endless `text/event-stream` of `change` events (data: a WatchChange), `config` events and, at the end, an `error` event", content_type = "text/event-stream"),
              (status = 400, body = crate::service::ErrorBody, description = "A bad prefix or position"),
              (status = 401, body = crate::service::ErrorBody), (status = 403, body = crate::service::ErrorBody),
              (status = 410, body = crate::service::ErrorBody, description = "The position is out of the feed's retention: re-read, then watch from now"),
              (status = 503, body = crate::service::ErrorBody, description = "The change feed cannot be reached")))]
pub(crate) async fn watch(
    State(state): State<AppState>,
    caller: axum::Extension<Option<Identity>>,
    http::Query(q): http::Query<WatchQuery>,
    headers: HeaderMap,
) -> Result<Response, ServiceError> {
    let service = Service::authorize(&state, caller.0.as_ref(), Scope::Read)?;
    let last_event = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let resume = q.resume_from.or(last_event);
    let items = service.watch(&q.prefix, resume.as_deref()).await?;
    let events = ReceiverStream::new(items).map(|item| {
        Ok::<_, Infallible>(match item {
            Ok(WatchItem::Change(change)) => Event::default()
                .event("change")
                .id(change.position.clone())
                .json_data(&change)
                .unwrap_or_else(|_| Event::default().event("change")),
            Ok(WatchItem::Config(reason)) => Event::default().event("config").data(reason),
            Err(e) => Event::default()
                .event("error")
                .json_data(e.body())
                .unwrap_or_else(|_| Event::default().event("error")),
        })
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}
