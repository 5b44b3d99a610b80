//! Restart decisions and backoff: pure functions of an exit, a policy and the run's length.

use std::time::Duration;

use ward_runtime::ExitStatus;
use ward_spec::{RestartMode, RestartPolicy};

/// Exponential backoff between restarts of a crashing instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// Delay before the first restart.
    pub initial: Duration,
    /// The delay doubles per failure in a row up to this cap.
    pub max: Duration,
    /// A run at least this long resets the count of failures in a row.
    pub reset_after: Duration,
    /// This many failures in a row, each shorter than `reset_after`, are a crash loop:
    /// restarts end with a diagnosis (unless the workload's `heal` policy is `off`).
    pub crash_loop: u32,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            reset_after: Duration::from_secs(30),
            crash_loop: 5,
        }
    }
}

impl BackoffPolicy {
    /// The delay before the next start, given how many failures came in a row before this one.
    pub fn delay(&self, failures_in_row: u32) -> Duration {
        let factor = 1u32
            .checked_shl(failures_in_row.min(20))
            .unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// Whether an instance that exited on its own should start again.
pub fn should_restart(policy: &RestartPolicy, exit: &ExitStatus, restarts_so_far: u32) -> bool {
    match policy.policy {
        RestartMode::Never => false,
        RestartMode::Always => true,
        RestartMode::OnFailure => {
            !exit.success()
                && policy
                    .max_retries
                    .is_none_or(|max_retries| restarts_so_far < max_retries)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    fn exit(code: Option<i32>, oom_killed: bool) -> ExitStatus {
        ExitStatus {
            exit_code: code,
            signal: None,
            oom_killed,
            finished_at: SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn backoff_doubles_then_caps() {
        let policy = BackoffPolicy::default();
        let delays: Vec<u64> = (0..9)
            .map(|failures| policy.delay(failures).as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(policy.delay(u32::MAX), policy.max);
    }

    #[test]
    fn restart_policies() {
        let check = |mode: RestartMode,
                     max_retries: Option<u32>,
                     exit: ExitStatus,
                     restarts: u32,
                     expected: bool| {
            let policy = RestartPolicy {
                policy: mode,
                max_retries,
            };
            assert_eq!(
                should_restart(&policy, &exit, restarts),
                expected,
                "{mode:?} {max_retries:?} {exit:?} {restarts}"
            );
        };
        check(RestartMode::Never, None, exit(Some(1), false), 0, false);
        check(RestartMode::Always, None, exit(Some(0), false), 100, true);
        check(RestartMode::OnFailure, None, exit(Some(0), false), 0, false);
        check(RestartMode::OnFailure, None, exit(Some(2), false), 50, true);
        check(RestartMode::OnFailure, None, exit(Some(0), true), 0, true);
        check(RestartMode::OnFailure, None, exit(None, false), 0, true);
        check(
            RestartMode::OnFailure,
            Some(3),
            exit(Some(1), false),
            2,
            true,
        );
        check(
            RestartMode::OnFailure,
            Some(3),
            exit(Some(1), false),
            3,
            false,
        );
    }
}
