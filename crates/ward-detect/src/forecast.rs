//! Forecasts: a series' level, trend and daily, weekly and shorter cycles, carried forward.
//!
//! The series is split into a level (an exponentially smoothed, deseasonalised value), a
//! damped trend, and a pattern per time of day (and per time of week when the history
//! covers several weeks, and per phase of a shorter cycle the history shows, found by
//! autocorrelation: a cron job, a garbage collector), each pattern the median of its slot's
//! detrended values, so a single outage does not bend it. Which parts a series gets is decided on its own
//! history: each candidate model is fitted on the older part and scored on the newest
//! part, and the best one, refitted on everything, makes the forecast. A sawtooth (memory
//! that grows and is freed) has no lasting trend and gets none, where a straight line
//! through it would run away.

/// Seconds in a day and a week.
const DAY: f64 = 86_400.0;
const WEEK: f64 = 7.0 * DAY;

/// What to forecast from.
#[derive(Debug, Clone, Copy)]
pub struct History<'a> {
    /// Seconds since the epoch, increasing.
    pub times: &'a [f64],
    pub values: &'a [f64],
}

/// One forecast point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub time: f64,
    pub value: f64,
    /// A band that held about 80 % of the model's errors on the newest history.
    pub lower: f64,
    pub upper: f64,
}

/// The parts of a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape {
    daily: bool,
    weekly: bool,
    /// A repeating pattern of the period the history shows (see [`cycle_period`]).
    cycle: bool,
    trend: bool,
}

/// A fitted model.
#[derive(Debug, Clone)]
struct Model {
    shape: Shape,
    daily: Vec<f64>,
    weekly: Vec<f64>,
    cycle: Vec<f64>,
    period: f64,
    level: f64,
    trend: f64,
    last_time: f64,
}

/// How fast the level follows the newest values, per point.
const LEVEL_RATE: f64 = 0.05;
/// The fewest points a trend is fitted to.
const TREND_POINTS: usize = 8;
/// How much of the trend is kept per day ahead: a trend fades over about a week.
const TREND_KEPT_PER_DAY: f64 = 0.85;

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let middle = values.len() / 2;
    values.select_nth_unstable_by(middle, f64::total_cmp);
    values[middle]
}

/// The typical interval between points.
fn step_of(times: &[f64]) -> f64 {
    let mut steps: Vec<f64> = times
        .windows(2)
        .map(|w| w[1] - w[0])
        .filter(|s| *s > 0.0)
        .collect();
    median(&mut steps).max(1e-3)
}

fn slot(time: f64, period: f64, slots: usize) -> usize {
    ((time.rem_euclid(period) / period) * slots as f64) as usize % slots
}

/// Per-slot medians of `residuals`, centred on zero; slots with no points get zero.
fn pattern(times: &[f64], residuals: &[f64], period: f64, slots: usize) -> Vec<f64> {
    let mut buckets = vec![Vec::new(); slots];
    for (&time, &residual) in times.iter().zip(residuals) {
        buckets[slot(time, period, slots)].push(residual);
    }
    let mut pattern: Vec<f64> = buckets.iter_mut().map(|bucket| median(bucket)).collect();
    let mut present: Vec<f64> = buckets
        .iter()
        .zip(&pattern)
        .filter(|(b, _)| !b.is_empty())
        .map(|(_, &p)| p)
        .collect();
    let centre = median(&mut present);
    for (value, bucket) in pattern.iter_mut().zip(&buckets) {
        *value = if bucket.is_empty() {
            0.0
        } else {
            *value - centre
        };
    }
    pattern
}

/// A trailing mean over `window` seconds, for detrending before the patterns are taken.
fn trailing_mean(times: &[f64], values: &[f64], window: f64) -> Vec<f64> {
    let mut out = Vec::with_capacity(values.len());
    let (mut start, mut sum) = (0, 0.0);
    for (i, (&time, &value)) in times.iter().zip(values).enumerate() {
        sum += value;
        while times[start] < time - window {
            sum -= values[start];
            start += 1;
        }
        out.push(sum / (i - start + 1) as f64);
    }
    out
}

impl Model {
    fn slots(period: f64, step: f64) -> usize {
        ((period / step).round() as usize).clamp(1, if period > DAY { 168 } else { 288 })
    }

    fn seasonal(&self, time: f64) -> f64 {
        let mut value = 0.0;
        if self.shape.daily {
            value += self.daily[slot(time, DAY, self.daily.len())];
        }
        if self.shape.weekly {
            value += self.weekly[slot(time, WEEK, self.weekly.len())];
        }
        if self.shape.cycle {
            value += self.cycle[slot(time, self.period, self.cycle.len())];
        }
        value
    }

    fn fit(history: History<'_>, shape: Shape, period: f64) -> Model {
        let History { times, values } = history;
        let step = step_of(times);
        let mut model = Model {
            shape,
            daily: Vec::new(),
            weekly: Vec::new(),
            cycle: Vec::new(),
            period,
            level: 0.0,
            trend: 0.0,
            last_time: *times.last().unwrap_or(&0.0),
        };
        if shape.daily || shape.weekly || shape.cycle {
            let window = if shape.weekly {
                WEEK
            } else if shape.daily {
                DAY
            } else {
                period
            };
            let base = trailing_mean(times, values, window);
            let mut residuals: Vec<f64> = values.iter().zip(&base).map(|(v, b)| v - b).collect();
            if shape.weekly {
                model.weekly = pattern(times, &residuals, WEEK, Model::slots(WEEK, step));
                for (residual, &time) in residuals.iter_mut().zip(times) {
                    *residual -= model.weekly[slot(time, WEEK, model.weekly.len())];
                }
            }
            if shape.daily {
                model.daily = pattern(times, &residuals, DAY, Model::slots(DAY, step));
                for (residual, &time) in residuals.iter_mut().zip(times) {
                    *residual -= model.daily[slot(time, DAY, model.daily.len())];
                }
            }
            if shape.cycle {
                model.cycle = pattern(times, &residuals, period, Model::slots(period, step));
            }
        }
        if shape.trend {
            // The robust slope of daily medians of the deseasonalised values over the last
            // two weeks (Theil-Sen), per second.
            let span = (2.0 * WEEK).min(times[times.len() - 1] - times[0]);
            let since = times[times.len() - 1] - span;
            let window = (span / 8.0).max(step);
            let mut centres: Vec<(f64, f64)> = Vec::new();
            let mut bucket: Vec<f64> = Vec::new();
            let mut bucket_start = since;
            for (&time, &value) in times.iter().zip(values).filter(|(&t, _)| t >= since) {
                if time >= bucket_start + window && !bucket.is_empty() {
                    centres.push((bucket_start + window / 2.0, median(&mut bucket)));
                    bucket.clear();
                    bucket_start += window * ((time - bucket_start) / window).floor();
                }
                bucket.push(value - model.seasonal(time));
            }
            if !bucket.is_empty() {
                centres.push((bucket_start + window / 2.0, median(&mut bucket)));
            }
            let mut slopes = Vec::new();
            for (i, a) in centres.iter().enumerate() {
                for b in &centres[i + 1..] {
                    if b.0 > a.0 {
                        slopes.push((b.1 - a.1) / (b.0 - a.0));
                    }
                }
            }
            model.trend = median(&mut slopes);
        }
        // The level: deseasonalised values, exponentially smoothed, each value compared with
        // where the trend would have carried the level to (so a steady ramp is tracked, not
        // trailed).
        let rate = LEVEL_RATE.max(step / DAY).min(1.0);
        let mut level = values[0] - model.seasonal(times[0]);
        let mut previous = times[0];
        for (&time, &value) in times.iter().zip(values) {
            level += model.trend * (time - previous);
            previous = time;
            level += rate * (value - model.seasonal(time) - level);
        }
        model.level = level;
        model
    }

    fn at(&self, time: f64) -> f64 {
        let ahead = (time - self.last_time).max(0.0);
        let trend = if self.shape.trend {
            // The integral of a trend that fades by TREND_KEPT_PER_DAY each day.
            let fade = TREND_KEPT_PER_DAY.ln() / DAY;
            self.trend * ((fade * ahead).exp() - 1.0) / fade
        } else {
            0.0
        };
        self.level + trend + self.seasonal(time)
    }
}

/// The candidate shapes a history of `span` seconds supports, `period` being the cycle it
/// shows (0 for none).
fn shapes(span: f64, points: usize, period: f64) -> Vec<Shape> {
    let mut shapes = Vec::new();
    for daily in [false, true] {
        for weekly in [false, true] {
            for cycle in [false, true] {
                for trend in [false, true] {
                    if (daily && span < 3.0 * DAY)
                        || (weekly && span < 3.0 * WEEK)
                        || (cycle && (period <= 0.0 || span < 3.0 * period))
                        || (trend && points < TREND_POINTS)
                    {
                        continue;
                    }
                    shapes.push(Shape {
                        daily,
                        weekly,
                        cycle,
                        trend,
                    });
                }
            }
        }
    }
    shapes
}

/// Points a history is resampled to before its cycle is looked for.
const CYCLE_POINTS: usize = 1024;
/// How closely a history must match itself one period later for a cycle to count
/// (autocorrelation).
const CYCLE_MATCH: f64 = 0.5;

/// The period of a pattern that repeats within a day, if the history shows one: the lag
/// (of 4 points to a third of the history) at which the history, detrended, best matches
/// itself, when it matches well. Daily and weekly patterns are fitted by the time of day
/// and of week instead.
fn cycle_period(times: &[f64], values: &[f64]) -> f64 {
    let n = times.len();
    if n < 12 {
        return 0.0;
    }
    let (first, span) = (times[0], times[n - 1] - times[0]);
    let step = step_of(times);
    let points = ((span / step).round() as usize + 1).clamp(2, CYCLE_POINTS);
    let width = span / (points - 1) as f64;
    if width <= 0.0 {
        return 0.0;
    }
    // Evenly spaced means; an empty bucket repeats the one before.
    let mut sums = vec![(0.0, 0u32); points];
    for (&time, &value) in times.iter().zip(values) {
        let index = (((time - first) / width).round() as usize).min(points - 1);
        sums[index].0 += value;
        sums[index].1 += 1;
    }
    let mut series = Vec::with_capacity(points);
    for (sum, count) in sums {
        let value = if count > 0 {
            sum / f64::from(count)
        } else {
            series.last().copied().unwrap_or(values[0])
        };
        series.push(value);
    }
    // Detrended by a least-squares line.
    let mean_x = (points - 1) as f64 / 2.0;
    let mean_y = series.iter().sum::<f64>() / points as f64;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (i, y) in series.iter().enumerate() {
        sxy += (i as f64 - mean_x) * (y - mean_y);
        sxx += (i as f64 - mean_x).powi(2);
    }
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    for (i, y) in series.iter_mut().enumerate() {
        *y -= mean_y + slope * (i as f64 - mean_x);
    }
    let energy: f64 = series.iter().map(|y| y * y).sum();
    if energy <= 0.0 {
        return 0.0;
    }
    let correlation = |lag: usize| {
        let sum: f64 = series.iter().zip(&series[lag..]).map(|(a, b)| a * b).sum();
        sum / energy * points as f64 / (points - lag) as f64
    };
    // The best lag after the correlation first falls below zero (before that, a lag only
    // matches because neighbours are alike).
    let lags: Vec<f64> = (0..points / 3).map(correlation).collect();
    let Some(crossed) = lags.iter().position(|c| *c < 0.0) else {
        return 0.0;
    };
    let Some((lag, best)) = lags
        .iter()
        .enumerate()
        .skip(crossed.max(4))
        .max_by(|a, b| a.1.total_cmp(b.1))
    else {
        return 0.0;
    };
    let period = lag as f64 * width;
    if *best < CYCLE_MATCH || period >= DAY {
        return 0.0;
    }
    period
}

/// Forecasts `history` at each of `times` (which should follow it).
pub fn forecast(history: History<'_>, times: &[f64]) -> Vec<Point> {
    assert_eq!(history.times.len(), history.values.len());
    if history.values.is_empty() {
        return Vec::new();
    }
    let n = history.values.len();
    let span = history.times[n - 1] - history.times[0];
    // Choose the shape on the newest fifth of the history, after fitting on the rest.
    let cut = n - (n / 5).max(1).min(n - 1);
    let (older, newer) = (
        History {
            times: &history.times[..cut],
            values: &history.values[..cut],
        },
        (&history.times[cut..], &history.values[cut..]),
    );
    let period = cycle_period(history.times, history.values);
    let mut best: Option<(f64, Shape, Vec<f64>)> = None;
    for shape in shapes(span * cut as f64 / n as f64, cut, period) {
        let model = Model::fit(older, shape, period);
        let errors: Vec<f64> = newer
            .0
            .iter()
            .zip(newer.1)
            .map(|(&t, &v)| v - model.at(t))
            .collect();
        let error = errors.iter().map(|e| e.abs()).sum::<f64>() / errors.len() as f64;
        if best.as_ref().is_none_or(|(e, _, _)| error < *e) {
            best = Some((error, shape, errors));
        }
    }
    let (shape, mut errors) = best.map_or(
        (
            Shape {
                daily: false,
                weekly: false,
                cycle: false,
                trend: false,
            },
            vec![0.0],
        ),
        |b| (b.1, b.2),
    );
    let model = Model::fit(history, shape, period);
    // An 80 % band from the validation errors' 10th and 90th percentiles.
    errors.sort_by(f64::total_cmp);
    let quantile = |q: f64| errors[((errors.len() - 1) as f64 * q).round() as usize];
    let (low, high) = (quantile(0.1), quantile(0.9));
    times
        .iter()
        .map(|&time| {
            let value = model.at(time);
            Point {
                time,
                value,
                lower: value + low.min(0.0),
                upper: value + high.max(0.0),
            }
        })
        .collect()
}

/// Times every `step` seconds after the history's last, up to `horizon` seconds ahead.
pub fn times_ahead(history: History<'_>, horizon: f64) -> Vec<f64> {
    let Some(&last) = history.times.last() else {
        return Vec::new();
    };
    let step = step_of(history.times);
    let count = (horizon / step).floor().min(1e6) as usize;
    (1..=count).map(|i| last + step * i as f64).collect()
}

/// When the forecast first reaches `limit` (rising to it), if within `times`.
pub fn time_to(points: &[Point], limit: f64) -> Option<f64> {
    points
        .iter()
        .find(|point| point.value >= limit)
        .map(|point| point.time)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn daily(days: usize, step: f64, trend_per_day: f64) -> (Vec<f64>, Vec<f64>) {
        let n = (days as f64 * DAY / step) as usize;
        let times: Vec<f64> = (0..n).map(|i| i as f64 * step).collect();
        let values = times
            .iter()
            .map(|t| {
                100.0 + 30.0 * (t / DAY * std::f64::consts::TAU).sin() + trend_per_day * t / DAY
            })
            .collect();
        (times, values)
    }

    /// A noisy five-minute cycle over a slow rise, every second for half an hour.
    fn five_minute_cycle() -> (Vec<f64>, Vec<f64>) {
        let times: Vec<f64> = (0..1800).map(f64::from).collect();
        let mut noise = 0x2545_f491_u32;
        let values = times
            .iter()
            .map(|t| {
                noise ^= noise << 13;
                noise ^= noise >> 17;
                noise ^= noise << 5;
                let jitter = f64::from(noise % 1000) / 1000.0 - 0.5;
                60.0 + 40.0 * (t / 300.0 * std::f64::consts::TAU).sin() + t / 60.0 + 2.0 * jitter
            })
            .collect();
        (times, values)
    }

    #[test]
    fn a_cycle_shorter_than_a_day_is_found_and_carried_forward() {
        let (times, values) = five_minute_cycle();
        let period = cycle_period(&times[..1440], &values[..1440]);
        assert!((period - 300.0).abs() <= 6.0, "period {period}");
        let points = forecast(
            History {
                times: &times[..1440],
                values: &values[..1440],
            },
            &times[1440..],
        );
        let mean_error = points
            .iter()
            .zip(&values[1440..])
            .map(|(p, v)| (p.value - v).abs())
            .sum::<f64>()
            / points.len() as f64;
        // The wave alone is 25 on average away from its middle.
        assert!(mean_error < 5.0, "mean error {mean_error}");
    }

    #[test]
    fn a_series_without_a_cycle_gets_none() {
        let times: Vec<f64> = (0..2000).map(f64::from).collect();
        let mut walk = 0.0;
        let mut noise = 0x9e37_79b9_u32;
        let values: Vec<f64> = times
            .iter()
            .map(|_| {
                noise ^= noise << 13;
                noise ^= noise >> 17;
                noise ^= noise << 5;
                walk += f64::from(noise % 1000) / 1000.0 - 0.5;
                walk
            })
            .collect();
        assert_eq!(cycle_period(&times, &values), 0.0);
        let flat = vec![5.0; 2000];
        assert_eq!(cycle_period(&times, &flat), 0.0);
    }

    #[test]
    fn a_daily_pattern_is_carried_forward() {
        let (times, values) = daily(14, 600.0, 0.0);
        let (history, future) = (times.len() * 4 / 5, times.len());
        let points = forecast(
            History {
                times: &times[..history],
                values: &values[..history],
            },
            &times[history..future],
        );
        let worst = points
            .iter()
            .zip(&values[history..])
            .map(|(p, v)| (p.value - v).abs())
            .fold(0.0, f64::max);
        assert!(worst < 3.0, "worst error {worst}");
    }

    #[test]
    fn a_steady_rise_reaches_its_limit_on_time() {
        let (times, values) = daily(10, 600.0, 5.0);
        let ahead = times_ahead(
            History {
                times: &times,
                values: &values,
            },
            3.0 * DAY,
        );
        assert_eq!(ahead.len(), 432);
        let points = forecast(
            History {
                times: &times,
                values: &values,
            },
            &ahead,
        );
        // The level is 150 at the end of day 10 and rises 5 a day, fading 15 % a day; the
        // daily wave adds up to 30: the peak of day 11 (at 6 h) is about 185.
        let when = time_to(&points, 180.0).expect("reaches 180");
        assert!(
            when > times[times.len() - 1] && when < times[times.len() - 1] + DAY,
            "{when}"
        );
        assert!(time_to(&points, 1000.0).is_none());
    }

    #[test]
    fn a_sawtooth_has_no_runaway_trend() {
        // Memory that grows for a day and is freed, ten times.
        let times: Vec<f64> = (0..1440).map(|i| f64::from(i) * 600.0).collect();
        let values: Vec<f64> = times
            .iter()
            .map(|t| 100.0 + 50.0 * (t % DAY) / DAY)
            .collect();
        let ahead = times_ahead(
            History {
                times: &times,
                values: &values,
            },
            5.0 * DAY,
        );
        let points = forecast(
            History {
                times: &times,
                values: &values,
            },
            &ahead,
        );
        let top = points.iter().map(|p| p.value).fold(f64::MIN, f64::max);
        assert!(top < 160.0, "forecast climbs to {top}");
    }
}
