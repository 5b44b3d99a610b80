//! Health checks: probe a running instance at an interval; after `retries` failures in a row
//! ask the reconcile loop to replace it. Failures within `start_period` of the start, before
//! the first success, do not count.

use std::sync::Arc;

use ward_runtime::{InstanceHandle, InstanceKey};
use ward_spec::HealthCheck;

use crate::events::{EventKind, PendingEvent};
use crate::view::{HealthState, Phase};
use crate::Inner;

pub(crate) async fn run(
    inner: Arc<Inner>,
    key: InstanceKey,
    handle: InstanceHandle,
    generation: u64,
    check: HealthCheck,
) {
    let mut failures = 0u32;
    // Until the first success, failures within the start period do not count.
    let start_period_ends = tokio::time::Instant::now() + check.start_period;
    let mut succeeded = false;
    loop {
        tokio::time::sleep(check.interval).await;
        if !is_current(&inner, &key, generation) {
            return;
        }
        let probing = tokio::time::Instant::now();
        let result = inner
            .driver
            .probe(&handle, &check.probe, check.timeout)
            .await;
        let took = probing.elapsed().as_secs_f64();
        if !is_current(&inner, &key, generation) {
            return;
        }
        let name = key.instance_name();
        let mut state = inner.lock();
        let Some(instance) = state
            .workloads
            .get_mut(&(key.project.clone(), key.workload.clone()))
            .and_then(|entry| entry.instances.get_mut(&key.replica))
        else {
            return;
        };
        instance.last_probe_seconds = Some(took);
        match result {
            Ok(()) => {
                failures = 0;
                succeeded = true;
                if instance.health != Some(HealthState::Healthy) {
                    instance.health = Some(HealthState::Healthy);
                    let event = PendingEvent::for_instance(
                        &key,
                        EventKind::Healthy,
                        format!("{name} is healthy"),
                    );
                    let record = instance.to_record(&key);
                    inner.record_releasing(state, Some((&key, record)), vec![event]);
                }
            }
            Err(reason) if !succeeded && tokio::time::Instant::now() < start_period_ends => {
                tracing::debug!(instance = %name, %reason, "health check failed within the start period");
                instance.health = Some(HealthState::Starting);
            }
            Err(reason) => {
                failures += 1;
                let mut events = vec![PendingEvent::for_instance(
                    &key,
                    EventKind::HealthFailed,
                    format!(
                        "{name} health check failed ({failures}/{}): {reason}",
                        check.retries
                    ),
                )];
                if failures >= check.retries {
                    instance.health = Some(HealthState::Unhealthy);
                    instance.restart_requested = true;
                    events.push(PendingEvent::for_instance(
                        &key,
                        EventKind::Unhealthy,
                        format!(
                            "{name} is unhealthy after {failures} failed checks; restarting it"
                        ),
                    ));
                }
                let record = instance.to_record(&key);
                inner.record_releasing(state, Some((&key, record)), events);
                if failures >= check.retries {
                    inner.wake.notify_one();
                    return;
                }
            }
        }
    }
}

fn is_current(inner: &Inner, key: &InstanceKey, generation: u64) -> bool {
    let state = inner.lock();
    state
        .workloads
        .get(&(key.project.clone(), key.workload.clone()))
        .and_then(|entry| entry.instances.get(&key.replica))
        .is_some_and(|instance| {
            instance.generation == generation && instance.phase == Phase::Running
        })
}
