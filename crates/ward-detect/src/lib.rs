//! Ward's streaming anomaly detector: one online detector per series, in bounded state.
//!
//! Every point is scored against what came before it and nothing else: a point's score
//! never depends on later points, on the series' length or on its global range. The
//! detector watches six signs of trouble, each a non-negative surprise:
//!
//! - **level**: how far the value is from its usual level, in robust scales;
//! - **change**: how far the step from the previous value is from the usual step;
//! - **spread**: how much noisier or quieter the recent values are than usual;
//! - **time of day**: how far the value is from its usual value at this time of day;
//! - **sustained level** and **sustained change**: the first two, averaged over the last
//!   few points, so that a small but persistent shift stands out.
//!
//! Each surprise is turned into a tail probability by ranking it among the same sign's
//! earlier values (a log-spaced histogram with decay, extrapolated beyond the largest seen),
//! so a series that is always jumpy does not keep alarming. The smallest probability, times
//! the number of signs, gives the score `1 - p`. After a point scores high the detector holds
//! back for a while unless something clearly worse follows, so one incident is one alarm.
//!
//! State per series is about 2 KiB ([`Detector::STATE_BYTES`]) and an update costs a few
//! hundred nanoseconds.

use std::fmt;

pub mod csv;
pub mod forecast;
pub mod time;

/// Exponentially weighted location and absolute deviation, robust to outliers: a spike
/// moves them as if it were three deviations away.
#[derive(Debug, Clone, Copy)]
struct Robust {
    mean: f64,
    dev: f64,
    n: u32,
}

impl Robust {
    const NEW: Robust = Robust {
        mean: 0.0,
        dev: 0.0,
        n: 0,
    };

    /// The deviation, but never under `floor`.
    fn scale(&self, floor: f64) -> f64 {
        self.dev.max(floor).max(1e-12)
    }

    /// The signed deviation of `x` in scales (0 until there is something to compare
    /// with), then learns `x` at rate `alpha` (faster at first, like a plain average).
    fn surprise(&mut self, x: f64, alpha: f64, floor: f64) -> f64 {
        self.n = self.n.saturating_add(1);
        if self.n == 1 {
            self.mean = x;
            return 0.0;
        }
        let alpha = alpha.max(1.0 / f64::from(self.n));
        let delta = x - self.mean;
        let scale = self.scale(floor);
        let clipped = if self.n > 10 {
            delta.clamp(-3.0 * scale, 3.0 * scale)
        } else {
            delta
        };
        self.mean += alpha * clipped;
        self.dev += alpha * (clipped.abs() - self.dev);
        if self.n <= 3 {
            0.0
        } else {
            delta / scale
        }
    }
}

/// [`Robust`] in single precision, for the many time-of-day slots.
#[derive(Debug, Clone, Copy)]
struct Slot {
    mean: f32,
    dev: f32,
    n: u16,
}

impl Slot {
    const NEW: Slot = Slot {
        mean: 0.0,
        dev: 0.0,
        n: 0,
    };

    fn surprise(&mut self, x: f64, alpha: f64, floor: f64) -> f64 {
        let mut wide = Robust {
            mean: f64::from(self.mean),
            dev: f64::from(self.dev),
            n: u32::from(self.n),
        };
        let z = wide.surprise(x, alpha, floor);
        (self.mean, self.dev, self.n) = (
            wide.mean as f32,
            wide.dev as f32,
            wide.n.min(u32::from(u16::MAX)) as u16,
        );
        z
    }
}

/// How rare a surprise is among the same sign's earlier ones.
#[derive(Debug, Clone)]
struct Rarity {
    counts: [u16; BUCKETS],
    total: u32,
}

/// Buckets of the rarity histograms: the first holds 0 to 0.25, then twelve per doubling.
const BUCKETS: usize = 96;
/// Buckets per doubling of the surprise.
const PER_DOUBLING: f64 = 12.0;
/// Histograms halve when they hold this many points, forgetting old behaviour.
const MEMORY: u32 = 3000;
/// How fast rarity falls beyond the largest surprise seen: e^-8 per doubling.
const BEYOND: f64 = 8.0;

impl Rarity {
    const NEW: Rarity = Rarity {
        counts: [0; BUCKETS],
        total: 0,
    };

    fn bucket(z: f64) -> usize {
        if z <= 0.25 {
            0
        } else {
            ((z * 4.0).log2() * PER_DOUBLING + 1.0).min(BUCKETS as f64 - 1.0) as usize
        }
    }

    /// The share of earlier surprises at least as large as `z` (counting one prior), then
    /// counts `z`.
    fn tail(&mut self, z: f64) -> f64 {
        let bucket = Rarity::bucket(z);
        let above: u32 = self.counts[bucket..].iter().map(|&c| u32::from(c)).sum();
        let mut p = (f64::from(above) + 1.0) / (f64::from(self.total) + 1.0);
        if above == 0 {
            let top = self.counts.iter().rposition(|&c| c > 0).unwrap_or(0);
            p *= (-((bucket - top) as f64) / PER_DOUBLING * BEYOND).exp();
        }
        self.counts[bucket] += 1;
        self.total += 1;
        if self.total >= MEMORY {
            for count in &mut self.counts {
                *count /= 2;
            }
            self.total = self.counts.iter().map(|&c| u32::from(c)).sum();
        }
        p
    }
}

/// The signs the detector watches, in the order of [`Detector::update`]'s arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sign {
    Level,
    Change,
    Spread,
    TimeOfDay,
    SustainedLevel,
    SustainedChange,
}

const SIGNS: usize = 6;

impl Sign {
    /// The sign's name in events and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Sign::Level => "level",
            Sign::Change => "change",
            Sign::Spread => "spread",
            Sign::TimeOfDay => "time_of_day",
            Sign::SustainedLevel => "sustained_level",
            Sign::SustainedChange => "sustained_change",
        }
    }

    const ALL: [Sign; SIGNS] = [
        Sign::Level,
        Sign::Change,
        Sign::Spread,
        Sign::TimeOfDay,
        Sign::SustainedLevel,
        Sign::SustainedChange,
    ];
}

/// The score of one point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    /// In [0, 1]; 1 - the probability of seeing something this unusual by chance.
    pub score: f64,
    /// Whether the score passes [`Detector::THRESHOLD`].
    pub anomaly: bool,
    /// The sign that drove the score.
    pub sign: Sign,
    /// Which way the value moved: above (`true`) or below its usual level.
    pub rising: bool,
    /// The value's usual level just before this point.
    pub usual: f64,
}

impl Verdict {
    /// A sentence on why the point is unusual, naming the series `what`, with the value
    /// and its usual level already written in their units.
    pub fn explain(&self, what: &str, value: &str, usual: &str) -> String {
        let way = if self.rising { "above" } else { "below" };
        match self.sign {
            Sign::Level => format!("{what} is {value}, far {way} its usual {usual}"),
            Sign::Change => {
                format!("{what} jumped to {value} from about {usual}, a far larger step than usual")
            }
            Sign::Spread => {
                format!("{what} is fluctuating far more or far less than usual (now {value})")
            }
            Sign::TimeOfDay => {
                format!("{what} is {value}, far {way} what is usual at this time of day")
            }
            Sign::SustainedLevel => {
                format!("{what} has stayed {way} its usual {usual} (now {value})")
            }
            Sign::SustainedChange => {
                format!("{what} keeps changing faster than it usually does (now {value})")
            }
        }
    }

    /// [`Verdict::explain`] with plain numbers.
    pub fn explain_numbers(&self, what: &str, value: f64) -> String {
        self.explain(
            what,
            &Number(value).to_string(),
            &Number(self.usual).to_string(),
        )
    }
}

/// A number the way a person writes it: few digits.
struct Number(f64);

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let x = self.0;
        if x.abs() >= 100.0 || x == x.trunc() {
            write!(f, "{x:.0}")
        } else if x.abs() >= 1.0 {
            write!(f, "{x:.2}")
        } else {
            write!(f, "{x:.3}")
        }
    }
}

/// Learning rates.
const LEVEL_RATE: f64 = 0.01;
const CHANGE_RATE: f64 = 0.003;
const SPREAD_RATE: f64 = 0.1;
const USUAL_SPREAD_RATE: f64 = 0.005;
const SLOT_RATE: f64 = 0.05;
const SUSTAINED_RATE: f64 = 0.1;
/// The smallest scale, relative to the usual level.
const FLOOR: f64 = 0.01;
/// Time-of-day slots (half an hour each).
const SLOTS: usize = 48;
/// Points learnt before any score.
const WARM_UP: u64 = 150;
/// A surprise (-log10 p) that starts holding back: p below 0.5 %.
const HOLD_FROM: f64 = 2.3;
/// Points held back after a high score.
const HOLD_FOR: u32 = 100;
/// While holding back, a point counts only if this many times as surprising.
const HOLD_MARGIN: f64 = 1.5;

// A live detector per series stays small.
const _: () = assert!(Detector::STATE_BYTES <= 4096);

/// The detector of one series.
#[derive(Debug, Clone)]
pub struct Detector {
    count: u64,
    last: f64,
    level: Robust,
    change: Robust,
    spread: f64,
    usual_spread: Robust,
    slots: [Slot; SLOTS],
    sustained_level: f64,
    sustained_change: f64,
    rarity: [Rarity; SIGNS],
    held_at: f64,
    holding: u32,
}

impl Default for Detector {
    fn default() -> Self {
        Detector::new()
    }
}

impl Detector {
    /// Scores at or above this are anomalies.
    pub const THRESHOLD: f64 = 0.993;
    /// The size of one detector's state.
    pub const STATE_BYTES: usize = std::mem::size_of::<Detector>();

    pub fn new() -> Detector {
        Detector {
            count: 0,
            last: 0.0,
            level: Robust::NEW,
            change: Robust::NEW,
            spread: 0.0,
            usual_spread: Robust::NEW,
            slots: [Slot::NEW; SLOTS],
            sustained_level: 0.0,
            sustained_change: 0.0,
            rarity: [Rarity::NEW; SIGNS],
            held_at: 0.0,
            holding: 0,
        }
    }

    /// Scores `value` observed at `time` (seconds since the epoch), then learns it. A value
    /// that is not finite is not learnt and scores 0.
    pub fn update(&mut self, time: f64, value: f64) -> Verdict {
        let usual = self.level.mean;
        if !value.is_finite() {
            return Verdict {
                score: 0.0,
                anomaly: false,
                sign: Sign::Level,
                rising: false,
                usual,
            };
        }
        self.count += 1;
        // A change under 1 % of the usual level is never a surprise (a page of memory more).
        let floor = FLOOR * self.level.mean.abs();
        let level = self.level.surprise(value, LEVEL_RATE, floor);
        let change = if self.count > 1 {
            self.change
                .surprise(value - self.last, CHANGE_RATE, floor)
                .abs()
        } else {
            0.0
        };
        self.last = value;

        let deviation = (level * self.level.scale(floor)).abs();
        self.spread += SPREAD_RATE * (deviation - self.spread);
        let usual_spread = self.usual_spread.mean.max(floor).max(1e-12);
        let spread = if self.count > 20 {
            2.0 * (self.spread.max(floor).max(1e-12) / usual_spread)
                .ln()
                .abs()
                .min(3.0)
        } else {
            0.0
        };
        self.usual_spread
            .surprise(deviation, USUAL_SPREAD_RATE, 0.0);

        let slot = (time.rem_euclid(86_400.0) / 86_400.0 * SLOTS as f64) as usize % SLOTS;
        let time_of_day = self.slots[slot].surprise(value, SLOT_RATE, floor).abs();

        self.sustained_level += SUSTAINED_RATE * (level.abs().min(6.0) - self.sustained_level);
        self.sustained_change += SUSTAINED_RATE * (change.min(6.0) - self.sustained_change);

        let surprises = [
            level.abs(),
            change,
            spread,
            time_of_day,
            self.sustained_level,
            self.sustained_change,
        ];
        let mut p = 1.0_f64;
        let mut sign = Sign::Level;
        for ((rarity, z), which) in self.rarity.iter_mut().zip(surprises).zip(Sign::ALL) {
            let q = rarity.tail(z);
            if q < p {
                p = q;
                sign = which;
            }
        }
        let p = (p * SIGNS as f64).min(1.0);
        let surprise = if self.count < WARM_UP {
            0.0
        } else {
            -p.log10()
        };

        // One incident, one alarm: after a high score, hold back unless clearly worse.
        let shown = if self.holding > 0 {
            self.holding -= 1;
            if surprise > self.held_at * HOLD_MARGIN {
                self.held_at = surprise;
                surprise
            } else {
                0.0
            }
        } else {
            if surprise >= HOLD_FROM {
                self.holding = HOLD_FOR;
                self.held_at = surprise;
            }
            surprise
        };
        let score = 1.0 - 10f64.powf(-shown);
        Verdict {
            score,
            anomaly: score >= Detector::THRESHOLD,
            sign,
            rising: level >= 0.0,
            usual,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(n: usize) -> Vec<(f64, f64)> {
        // A daily wave with deterministic noise, then a jump at 3/4.
        let mut seed = 7u64;
        (0..n)
            .map(|i| {
                seed = seed
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let noise = ((seed >> 33) as f64 / f64::from(1u32 << 31) - 0.5) * 2.0;
                let t = i as f64 * 300.0;
                let wave = 50.0 + 20.0 * (t / 86_400.0 * std::f64::consts::TAU).sin();
                (t, wave + noise + if i >= n * 3 / 4 { 40.0 } else { 0.0 })
            })
            .collect()
    }

    #[test]
    fn a_jump_is_an_anomaly_and_the_wave_is_not() {
        let points = series(4000);
        let mut detector = Detector::new();
        let verdicts: Vec<Verdict> = points.iter().map(|&(t, v)| detector.update(t, v)).collect();
        let jump = 3000;
        assert!(verdicts[jump].anomaly, "{:?}", verdicts[jump]);
        assert!(
            matches!(verdicts[jump].sign, Sign::Level | Sign::Change),
            "{:?}",
            verdicts[jump]
        );
        let why = verdicts[jump].explain_numbers("cpu of api", points[jump].1);
        assert!(
            why.starts_with("cpu of api jumped to") || why.contains("far above its usual"),
            "{why}"
        );
        let alarms = verdicts[1000..jump].iter().filter(|v| v.anomaly).count();
        assert!(alarms <= 2, "{alarms} alarms on the plain wave");
    }

    #[test]
    fn scores_depend_only_on_earlier_points() {
        let points = series(3000);
        let mut whole = Detector::new();
        let all: Vec<f64> = points
            .iter()
            .map(|&(t, v)| whole.update(t, v).score)
            .collect();
        let mut part = Detector::new();
        let first: Vec<f64> = points[..1234]
            .iter()
            .map(|&(t, v)| part.update(t, v).score)
            .collect();
        assert_eq!(first, all[..1234]);
    }

    #[test]
    fn a_flat_series_that_moves_by_a_page_is_not_an_anomaly() {
        // Memory that holds at 10 MiB for an hour, a 4 KiB page more or less now and then;
        // then it grows by half.
        let mut detector = Detector::new();
        for i in 0..3600 {
            let pages =
                [0.0, 0.0, 0.0, 1.0, 0.0, 2.0, 0.0][i % 7] + if i > 2000 { 1.0 } else { 0.0 };
            let verdict = detector.update(i as f64, 10_485_760.0 + 4096.0 * pages);
            assert!(!verdict.anomaly, "point {i}: {verdict:?}");
        }
        assert!(detector.update(3600.0, 15_728_640.0).anomaly);
    }

    #[test]
    fn non_finite_values_are_skipped() {
        let mut detector = Detector::new();
        for i in 0..500 {
            detector.update(f64::from(i), 1.0 + f64::from(i % 3));
        }
        let before = detector.clone();
        assert_eq!(detector.update(500.0, f64::NAN).score, 0.0);
        assert_eq!(detector.update(501.0, f64::INFINITY).score, 0.0);
        assert_eq!(format!("{before:?}"), format!("{detector:?}"));
    }
}
