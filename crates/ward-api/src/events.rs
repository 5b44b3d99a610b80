//! `GET /api/v1/events`: recorded events, then (with `follow`) new ones, as Server-Sent Events.

use std::convert::Infallible;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::{Extension, Json};
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use ward_client::wire::{EventEntry, NoteRequest};
use ward_core::door::Admission;
use ward_core::events::{Event, EventKind};
use ward_core::services::Workloads;

use crate::convert::event_entry;
use crate::error::{ApiError, JsonBody};
use crate::{blocking, ApiState};

/// Events replayed when neither `since` nor `follow` is given.
const RECENT_EVENTS: usize = 1000;

/// Events read from the log at a time when replaying after `since`.
const REPLAY_PAGE: usize = 1000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct EventQuery {
    /// Replay recorded events with an id greater than this.
    pub since: Option<i64>,
    /// Keep the stream open for new events.
    #[serde(default)]
    pub follow: bool,
    /// Only events of this project.
    pub project: Option<String>,
}

/// Records a note in a workload's events (a deploy, a change made elsewhere); the event
/// names the caller, and the call is audited.
#[utoipa::path(post, path = "/api/v1/workloads/{name}/events", params(("name" = String, Path)), tag = "events",
    request_body = NoteRequest,
    responses((status = 201, body = EventEntry), (status = 400, body = ward_client::wire::ErrorBody),
        (status = 404, body = ward_client::wire::ErrorBody)))]
pub async fn note(
    State(state): State<Arc<ApiState>>,
    Extension(admission): Extension<Admission>,
    Path(name): Path<String>,
    JsonBody(note): JsonBody<NoteRequest>,
) -> Result<(StatusCode, Json<EventEntry>), ApiError> {
    let data = note
        .data
        .unwrap_or_else(|| serde_json::Value::Object(Default::default()));
    let event =
        state
            .workloads
            .record_event(&admission, &name, EventKind::Note, &note.message, data)?;
    Ok((StatusCode::CREATED, Json(event_entry(&event))))
}

#[utoipa::path(get, path = "/api/v1/events", params(EventQuery), tag = "events",
    responses((status = 200, description = "Server-Sent Events; each `data:` is an EventEntry", body = ward_client::wire::EventEntry, content_type = "text/event-stream")))]
pub async fn events(
    State(state): State<Arc<ApiState>>,
    Query(query): Query<EventQuery>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let workloads = state.workloads.clone();
    // Subscribe before reading history so nothing falls between the two.
    let receiver = workloads.subscribe();
    let project = query.project.clone();
    // The id of the last event sent, so that the live stream repeats none of the replay.
    let last_sent = Arc::new(AtomicI64::new(query.since.unwrap_or(0)));
    let replay = match (query.since, query.follow) {
        (Some(since), _) => replay_after(workloads, project.clone(), since).boxed(),
        (None, false) => {
            let history =
                blocking(move || workloads.latest_events(project.as_deref(), RECENT_EVENTS))
                    .await?;
            stream::iter(history).boxed()
        }
        (None, true) => stream::empty().boxed(),
    };
    let replay = {
        let last_sent = last_sent.clone();
        replay.map(move |event| {
            last_sent.store(event.id, Ordering::Relaxed);
            Ok(to_sse(&event))
        })
    };
    if !query.follow {
        return Ok(Sse::new(replay.boxed()).keep_alive(KeepAlive::default()));
    }
    let project = query.project.clone();
    let live = stream::unfold(receiver, move |mut receiver| async move {
        loop {
            match receiver.recv().await {
                Ok(event) => return Some((event, receiver)),
                Err(RecvError::Lagged(skipped)) => {
                    tracing::warn!(
                        skipped,
                        "event follower fell behind; some events were skipped"
                    );
                }
                Err(RecvError::Closed) => return None,
            }
        }
    })
    .filter(move |event| {
        std::future::ready(
            event.id > last_sent.load(Ordering::Relaxed)
                && project
                    .as_deref()
                    .is_none_or(|project| event.project == project),
        )
    })
    .map(|event| Ok(to_sse(&event)));
    Ok(Sse::new(replay.chain(live).boxed()).keep_alive(KeepAlive::default()))
}

/// Every recorded event after `since`, read a page at a time as the client takes them.
fn replay_after(
    workloads: Arc<dyn Workloads>,
    project: Option<String>,
    since: i64,
) -> impl Stream<Item = Event> {
    stream::unfold(Some(since), move |after| {
        let workloads = workloads.clone();
        let project = project.clone();
        async move {
            let after = after?;
            let page = blocking(move || {
                workloads.events_after(project.as_deref(), Some(after), REPLAY_PAGE)
            })
            .await
            .unwrap_or_else(|error| {
                tracing::warn!(error = %error.detail().message, "cannot read recorded events; the replay ends early");
                Vec::new()
            });
            let next = (page.len() == REPLAY_PAGE).then(|| page.last().map(|event| event.id));
            (!page.is_empty()).then(|| (stream::iter(page), next.flatten()))
        }
    })
    .flatten()
}

fn to_sse(event: &Event) -> SseEvent {
    let entry = event_entry(event);
    SseEvent::default()
        .id(entry.id.to_string())
        .event(entry.kind.clone())
        .data(serde_json::to_string(&entry).unwrap_or_default())
}
