//! `GET /api/v1/workloads/{name}/logs`: newline-delimited JSON, optionally followed.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::Response;
use serde::Deserialize;
use ward_client::wire::LogEntry;
use ward_runtime::logs::LogFollower;
use ward_runtime::LogLine;

use crate::convert::log_entry;
use crate::error::ApiError;
use crate::workloads::project_of;
use crate::ApiState;

/// How often a follower looks for new lines (it reads only what was appended).
const FOLLOW_INTERVAL: Duration = Duration::from_millis(200);

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct LogQuery {
    pub project: Option<String>,
    /// Keep the response open and send new lines as they are written.
    #[serde(default)]
    pub follow: bool,
    /// Only the last N lines.
    pub tail: Option<usize>,
    /// Only lines after this time: RFC 3339, or a duration like `10m` meaning that long ago.
    pub since: Option<String>,
}

/// Parses `since`: an RFC 3339 time or a duration back from now.
pub fn parse_since(text: &str) -> Result<SystemTime, ApiError> {
    if let Ok(time) = humantime::parse_rfc3339_weak(text) {
        return Ok(time);
    }
    match humantime::parse_duration(text) {
        Ok(duration) => Ok(SystemTime::now()
            .checked_sub(duration)
            .unwrap_or(SystemTime::UNIX_EPOCH)),
        Err(_) => Err(ApiError::bad_request(format!(
            "since: {text:?} is neither a duration like 10m nor a time like 2026-01-02T15:04:05Z"
        ))),
    }
}

#[utoipa::path(get, path = "/api/v1/workloads/{name}/logs", params(("name" = String, Path), LogQuery), tag = "workloads",
    responses((status = 200, description = "Newline-delimited JSON log entries", body = LogEntry, content_type = "application/x-ndjson"),
        (status = 404, body = ward_client::wire::ErrorBody)))]
pub async fn logs(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    Query(query): Query<LogQuery>,
) -> Result<Response, ApiError> {
    let project = project_of(&query.project)?;
    let since = query.since.as_deref().map(parse_since).transpose()?;
    // Followers start at the files' ends before the first read, so no line written in
    // between is lost; the cursor below drops the ones both saw.
    let followers: Vec<(String, LogFollower)> = if query.follow {
        state
            .supervisor
            .log_locations(&project, &name)?
            .into_iter()
            .map(|(instance, location)| (instance, LogFollower::from_end(&location.path)))
            .collect()
    } else {
        Vec::new()
    };
    let initial = state.supervisor.logs(&project, &name, query.tail, since)?;
    let last_time = initial.last().map(|(_, line)| line.time).or(since);
    let mut body = String::new();
    for (instance, line) in &initial {
        push_line(&mut body, &log_entry(instance, line));
    }
    let response = Response::builder().header(header::CONTENT_TYPE, "application/x-ndjson");
    if !query.follow {
        return response
            .body(Body::from(body))
            .map_err(|error| ApiError::internal(&error));
    }
    let sent_at_last_time = initial
        .iter()
        .rev()
        .take_while(|(_, line)| Some(line.time) == last_time)
        .count();
    let supervisor = state.supervisor.clone();
    let cursor = FollowCursor {
        last_time,
        sent_at_last_time,
    };
    let stream = futures_util::stream::unfold(
        (Some(body), cursor, followers),
        move |(first, mut cursor, mut followers)| {
            let supervisor = supervisor.clone();
            let project = project.clone();
            let name = name.clone();
            async move {
                if let Some(first) = first {
                    return Some((
                        Ok::<_, Infallible>(Bytes::from(first)),
                        (None, cursor, followers),
                    ));
                }
                loop {
                    tokio::time::sleep(FOLLOW_INTERVAL).await;
                    // The workload is gone: end the stream.
                    supervisor.get(&project, &name).ok()?;
                    let mut lines: Vec<(String, LogLine)> = followers
                        .iter_mut()
                        .flat_map(|(instance, follower)| {
                            let instance = instance.clone();
                            follower
                                .poll()
                                .into_iter()
                                .map(move |line| (instance.clone(), line))
                        })
                        .collect();
                    lines.sort_by_key(|(_, line)| line.time);
                    let fresh = cursor.advance(lines);
                    if fresh.is_empty() {
                        continue;
                    }
                    let mut chunk = String::new();
                    for (instance, line) in &fresh {
                        push_line(&mut chunk, &log_entry(instance, line));
                    }
                    return Some((Ok(Bytes::from(chunk)), (None, cursor, followers)));
                }
            }
        },
    );
    response
        .body(Body::from_stream(stream))
        .map_err(|error| ApiError::internal(&error))
}

/// Where a follower is in the merged log: the newest timestamp sent and how many lines with
/// exactly that timestamp were sent. Lines older than that were sent already.
struct FollowCursor {
    last_time: Option<SystemTime>,
    sent_at_last_time: usize,
}

impl FollowCursor {
    /// Drops the lines already sent from `lines` (oldest first) and moves on.
    fn advance(&mut self, lines: Vec<(String, LogLine)>) -> Vec<(String, LogLine)> {
        let mut skip = self.sent_at_last_time;
        let fresh: Vec<_> = lines
            .into_iter()
            .filter(|(_, line)| {
                if self
                    .last_time
                    .is_some_and(|last_time| line.time < last_time)
                {
                    return false;
                }
                if Some(line.time) == self.last_time && skip > 0 {
                    skip -= 1;
                    return false;
                }
                true
            })
            .collect();
        if let Some((_, newest)) = fresh.last() {
            let newest_time = newest.time;
            let at_newest = fresh
                .iter()
                .rev()
                .take_while(|(_, line)| line.time == newest_time)
                .count();
            if Some(newest_time) == self.last_time {
                self.sent_at_last_time += at_newest;
            } else {
                self.last_time = Some(newest_time);
                self.sent_at_last_time = at_newest;
            }
        }
        fresh
    }
}

fn push_line(buffer: &mut String, entry: &LogEntry) {
    if let Ok(json) = serde_json::to_string(entry) {
        buffer.push_str(&json);
        buffer.push('\n');
    }
}
