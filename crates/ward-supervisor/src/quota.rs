//! Quotas per project, on what specs ask for (CPU, memory, GPUs summed over replicas;
//! workloads; replicas) and on what is measured (memory in use, bytes in the project's
//! volumes). A change that would go over a limit is refused naming the quota, the use and
//! the limit; the runtime also bounds the project's real memory and CPU use with a parent
//! cgroup.

use ward_spec::units::format_size;

pub use ward_core::view::{Quota, QuotaUsage};

/// Why a change is refused.
#[derive(Clone, Debug, PartialEq)]
pub struct QuotaExceeded {
    /// `cpu`, `memory`, `workloads`, `replicas`, `gpus` or `volume_bytes`.
    pub quota: &'static str,
    pub message: String,
}

/// Checks a change of a project from `before` to `after` (both configured, with the
/// measured fields of now) against `quota`. A total that does not grow passes even over its
/// limit, so that a project over a lowered quota can still shrink.
pub fn check(
    project: &str,
    quota: &Quota,
    before: &QuotaUsage,
    after: &QuotaUsage,
) -> Result<(), QuotaExceeded> {
    let over = |quota_name: &'static str,
                unit: &dyn Fn(f64) -> String,
                before: f64,
                after: f64,
                limit: f64| {
        Err(QuotaExceeded {
            quota: quota_name,
            message: format!(
                "quota {quota_name} of project {project}: {} in use, this change makes it {}, over the limit of {}",
                unit(before),
                unit(after),
                unit(limit)
            ),
        })
    };
    let count = |value: f64| format!("{value:.0}");
    let cores = |value: f64| format!("{value} cores");
    let bytes = |value: f64| format_size(value as u64);
    let counted = [
        (
            "workloads",
            quota.workloads,
            before.workloads,
            after.workloads,
        ),
        ("replicas", quota.replicas, before.replicas, after.replicas),
        ("gpus", quota.gpus, before.gpus, after.gpus),
    ];
    for (name, limit, before, after) in counted {
        if let Some(limit) = limit {
            if after > limit && after > before {
                return over(name, &count, before as f64, after as f64, limit as f64);
            }
        }
    }
    if let Some(limit) = quota.cpu {
        if after.cpu > limit + 1e-9 && after.cpu > before.cpu {
            return over("cpu", &cores, before.cpu, after.cpu, limit);
        }
    }
    if let Some(limit) = quota.memory {
        if after.memory > limit && after.memory > before.memory {
            return over(
                "memory",
                &bytes,
                before.memory as f64,
                after.memory as f64,
                limit as f64,
            );
        }
        // Measured: what runs now, plus what this change asks for on top.
        let added = after.memory.saturating_sub(before.memory);
        let measured_after = after.measured_memory.saturating_add(added);
        if added > 0 && measured_after > limit {
            return Err(QuotaExceeded {
                quota: "memory",
                message: format!(
                    "quota memory of project {project}: {} measured in use, this change asks {} more, over the limit of {}",
                    format_size(after.measured_memory),
                    format_size(added),
                    format_size(limit)
                ),
            });
        }
    }
    if let Some(limit) = quota.volume_bytes {
        let grows = after.workloads > before.workloads || after.replicas > before.replicas;
        if grows && after.volume_bytes > limit {
            return Err(QuotaExceeded {
                quota: "volume_bytes",
                message: format!(
                    "quota volume_bytes of project {project}: its volumes hold {}, over the limit of {}; free some before adding workloads",
                    format_size(after.volume_bytes),
                    format_size(limit)
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(workloads: u64, replicas: u64, cpu: f64, memory: u64) -> QuotaUsage {
        QuotaUsage {
            workloads,
            replicas,
            cpu,
            memory,
            ..QuotaUsage::default()
        }
    }

    #[test]
    fn growth_past_a_limit_is_refused_with_the_numbers() {
        let quota = Quota {
            cpu: Some(2.0),
            memory: Some(1 << 30),
            workloads: Some(3),
            ..Quota::default()
        };
        let before = usage(2, 2, 1.5, 512 << 20);
        assert!(check("web", &quota, &before, &usage(3, 3, 2.0, 1 << 30)).is_ok());
        let refused =
            check("web", &quota, &before, &usage(4, 4, 2.0, 1 << 30)).expect_err("refused");
        assert_eq!(refused.quota, "workloads");
        assert_eq!(
            refused.message,
            "quota workloads of project web: 2 in use, this change makes it 4, over the limit of 3"
        );
        let refused =
            check("web", &quota, &before, &usage(3, 3, 2.5, 1 << 30)).expect_err("refused");
        assert_eq!(refused.quota, "cpu");
        let refused =
            check("web", &quota, &before, &usage(3, 3, 2.0, 2 << 30)).expect_err("refused");
        assert_eq!(
            refused.message,
            "quota memory of project web: 512MiB in use, this change makes it 2GiB, over the limit of 1GiB"
        );
    }

    #[test]
    fn a_project_over_a_lowered_quota_may_still_shrink() {
        let quota = Quota {
            replicas: Some(2),
            ..Quota::default()
        };
        assert!(check("web", &quota, &usage(1, 5, 0.0, 0), &usage(1, 4, 0.0, 0)).is_ok());
        assert!(check("web", &quota, &usage(1, 5, 0.0, 0), &usage(1, 6, 0.0, 0)).is_err());
    }

    #[test]
    fn measured_memory_counts_against_the_memory_quota() {
        let quota = Quota {
            memory: Some(1 << 30),
            ..Quota::default()
        };
        let mut before = usage(1, 1, 0.0, 0);
        before.measured_memory = 900 << 20;
        let mut after = usage(2, 2, 0.0, 256 << 20);
        after.measured_memory = 900 << 20;
        let refused = check("web", &quota, &before, &after).expect_err("refused");
        assert!(
            refused.message.contains("900MiB measured"),
            "{}",
            refused.message
        );
    }
}
