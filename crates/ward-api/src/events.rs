//! `GET /api/v1/events`: recorded events, then (with `follow`) new ones, as Server-Sent Events.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use ward_supervisor::Event;

use crate::convert::event_entry;
use crate::error::ApiError;
use crate::ApiState;

/// Events replayed when neither `since` nor `follow` is given.
const RECENT_EVENTS: usize = 1000;

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

#[utoipa::path(get, path = "/api/v1/events", params(EventQuery), tag = "events",
    responses((status = 200, description = "Server-Sent Events; each `data:` is an EventEntry", body = ward_client::wire::EventEntry, content_type = "text/event-stream")))]
pub async fn events(
    State(state): State<Arc<ApiState>>,
    Query(query): Query<EventQuery>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let supervisor = state.supervisor.clone();
    // Subscribe before reading history so nothing falls between the two.
    let receiver = supervisor.subscribe();
    let history = match (query.since, query.follow) {
        (Some(since), _) => supervisor.events_after(Some(since), usize::MAX)?,
        (None, false) => {
            let latest = supervisor.events_after(None, usize::MAX)?;
            let skip = latest.len().saturating_sub(RECENT_EVENTS);
            latest.into_iter().skip(skip).collect()
        }
        (None, true) => Vec::new(),
    };
    let project = query.project.clone();
    let keep = move |event: &Event| {
        project
            .as_deref()
            .is_none_or(|project| event.project == project)
    };
    let last_replayed = history
        .last()
        .map(|event| event.id)
        .or(query.since)
        .unwrap_or(0);
    let replay: Vec<_> = history
        .into_iter()
        .filter(|event| keep(event))
        .map(|event| Ok(to_sse(&event)))
        .collect();
    let replay = stream::iter(replay);
    if !query.follow {
        return Ok(Sse::new(replay.boxed()).keep_alive(KeepAlive::default()));
    }
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
    .filter(move |event| std::future::ready(event.id > last_replayed && keep(event)))
    .map(|event| Ok(to_sse(&event)));
    Ok(Sse::new(replay.chain(live).boxed()).keep_alive(KeepAlive::default()))
}

fn to_sse(event: &Event) -> SseEvent {
    let entry = event_entry(event);
    SseEvent::default()
        .id(entry.id.to_string())
        .event(entry.kind.clone())
        .data(serde_json::to_string(&entry).unwrap_or_default())
}
