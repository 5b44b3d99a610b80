//! Autoscaling from CPU: `autoscale: {min, max, cpu}` keeps each replica's CPU near `cpu`
//! percent of its requested cores, deciding on window means (and a forecast of the
//! workload's total demand when scaling out), with a dead band between the out and in
//! thresholds and cooldowns after each change, so a steady load never flaps.

/// Scale out above this share of the target…
const OUT_ABOVE: f64 = 1.1;
/// …and in below this share, to as many replicas as bring the load to `IN_TO` of it, so a
/// scale-in never lands above the scale-out threshold.
const IN_BELOW: f64 = 0.7;
const IN_TO: f64 = 0.8;

/// The replicas a workload should run, or `None` to keep what it runs.
///
/// `replicas`: how many it runs; `utilisation`: each replica's mean CPU over the window as a
/// share of its request (1.0 = its whole request), and `forecast` the same a little ahead;
/// `target`: the spec's share (0.7 for `cpu: 70`).
pub fn decide(
    replicas: u32,
    min: u32,
    max: u32,
    utilisation: f64,
    forecast: Option<f64>,
    target: f64,
) -> Option<u32> {
    if replicas < min || replicas > max {
        return Some(replicas.clamp(min, max));
    }
    let load = replicas as f64 * utilisation;
    let coming = replicas as f64 * forecast.unwrap_or(utilisation).max(utilisation);
    if coming > replicas as f64 * target * OUT_ABOVE {
        let wanted = ((coming / target).ceil() as u32).clamp(min, max);
        return (wanted > replicas).then_some(wanted);
    }
    if utilisation < target * IN_BELOW && forecast.is_none_or(|ahead| ahead < target * IN_BELOW) {
        let wanted = ((load / (target * IN_TO)).ceil() as u32).clamp(min, max);
        return (wanted < replicas).then_some(wanted);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_out_to_bring_the_load_to_the_target_within_bounds() {
        assert_eq!(decide(1, 1, 4, 1.0, None, 0.5), Some(2));
        assert_eq!(decide(2, 1, 4, 1.0, None, 0.5), Some(4));
        assert_eq!(decide(2, 1, 3, 1.0, None, 0.5), Some(3));
        assert_eq!(decide(3, 1, 3, 1.0, None, 0.5), None, "at max");
        // A rising forecast scales out before the window mean is there.
        assert_eq!(decide(2, 1, 6, 0.5, Some(0.9), 0.5), Some(4));
    }

    #[test]
    fn scales_in_only_well_below_the_target_and_never_to_above_it() {
        assert_eq!(decide(3, 1, 3, 0.0, None, 0.5), Some(1));
        assert_eq!(decide(4, 1, 4, 0.3, None, 0.5), Some(3));
        // In the dead band nothing moves.
        for utilisation in [0.36, 0.4, 0.5, 0.54] {
            assert_eq!(
                decide(3, 1, 5, utilisation, None, 0.5),
                None,
                "{utilisation}"
            );
        }
        // A forecast of more to come holds a scale-in back.
        assert_eq!(decide(3, 1, 3, 0.1, Some(0.45), 0.5), None);
    }

    #[test]
    fn a_steady_load_settles_and_stays() {
        // A total demand of 1.3 cores of 0.5-core requests, at a 50 % target: whatever the
        // start, the count settles in a step or two and then holds.
        for start in 1..=8 {
            let mut replicas = start;
            let mut changes = 0;
            for _ in 0..20 {
                let utilisation = (1.3 / (replicas as f64 * 0.5)).min(1.0);
                if let Some(next) = decide(replicas, 1, 8, utilisation, None, 0.5) {
                    replicas = next;
                    changes += 1;
                }
            }
            assert!(changes <= 3, "from {start}: {changes} changes");
            let utilisation = (1.3 / (replicas as f64 * 0.5)).min(1.0);
            assert_eq!(decide(replicas, 1, 8, utilisation, None, 0.5), None);
        }
    }
}
