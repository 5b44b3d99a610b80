//! Following a workload's logs: the lines so far, then new lines as its instances write
//! them, merged by time, each line once.

use std::time::{Duration, SystemTime};

use ward_runtime::logs::LogFollower;
use ward_runtime::LogLine;

use ward_core::view::LogFollow;

use crate::{Supervisor, SupervisorError};

/// How often a follower looks for new lines (it reads only what was appended).
const FOLLOW_INTERVAL: Duration = Duration::from_millis(200);

/// A follow of one workload's logs, from [`Supervisor::follow_logs`].
pub struct WorkloadLogFollow {
    supervisor: Supervisor,
    project: String,
    name: String,
    followers: Vec<(String, LogFollower)>,
    cursor: FollowCursor,
}

#[async_trait::async_trait]
impl LogFollow for WorkloadLogFollow {
    async fn next(&mut self) -> Option<Vec<(String, LogLine)>> {
        loop {
            tokio::time::sleep(FOLLOW_INTERVAL).await;
            // Read before the files: lines written before the workload ended are all polled.
            let ended = self
                .supervisor
                .get(&self.project, &self.name)
                .ok()?
                .phase()
                .is_terminal();
            let mut lines: Vec<(String, LogLine)> = self
                .followers
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
            let fresh = self.cursor.advance(lines);
            if !fresh.is_empty() {
                return Some(fresh);
            }
            if ended {
                return None;
            }
        }
    }
}

impl Supervisor {
    /// The workload's log lines so far (the last `tail`, those after `since`), and a follow
    /// that yields the lines written after them.
    pub fn follow_logs(
        &self,
        project: &str,
        name: &str,
        tail: Option<usize>,
        since: Option<SystemTime>,
    ) -> Result<(Vec<(String, LogLine)>, WorkloadLogFollow), SupervisorError> {
        // Followers start at the files' ends before the first read, so no line written in
        // between is lost; the cursor drops the ones both saw.
        let followers = self
            .log_locations(project, name)?
            .into_iter()
            .map(|(instance, location)| (instance, LogFollower::from_end(&location.path)))
            .collect();
        let initial = self.logs(project, name, tail, since)?;
        let last_time = initial.last().map(|(_, line)| line.time).or(since);
        let sent_at_last_time = initial
            .iter()
            .rev()
            .take_while(|(_, line)| Some(line.time) == last_time)
            .count();
        let follow = WorkloadLogFollow {
            supervisor: self.clone(),
            project: project.to_string(),
            name: name.to_string(),
            followers,
            cursor: FollowCursor {
                last_time,
                sent_at_last_time,
            },
        };
        Ok((initial, follow))
    }
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
