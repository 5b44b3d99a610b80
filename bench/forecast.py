#!/usr/bin/env python3
"""Forecast error of `ward forecast` on the last 20 % of each series, against the two
forecasts Prometheus users reach for, computed here in the same run on the same cut:

- predict_linear: a least-squares line over the last W of the history, extended;
- Holt's linear method, the model of Prometheus' double_exponential_smoothing: either its
  smoothed level held flat (what the PromQL function returns) or extended with its trend.

Each baseline gets its best settings per series (W from 1 h to 7 d, or an eighth to all of
the history; smoothing and trend factors from 0.05 to 0.8, or no trend), chosen on the newest fifth of the history, as Ward chooses its
own model. The error is MASE: mean absolute error over the last 20 %, divided by the mean
absolute one-step change of the history.

    forecast.py WARD DATA_DIR
"""
import csv, math, os, statistics, subprocess, sys, tempfile
from datetime import datetime, timezone

WARD, DATA = sys.argv[1], sys.argv[2]


def epoch(text):
    text = text.strip()
    for form in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(text, form).replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            pass
    raise ValueError(text)


def linear(times, values, window):
    """predict_linear over the last `window` seconds: (slope, intercept)."""
    end = times[-1]
    points = [(t, v) for t, v in zip(times, values) if t >= end - window]
    if len(points) < 2:
        return 0.0, values[-1]
    mt = sum(t for t, _ in points) / len(points)
    mv = sum(v for _, v in points) / len(points)
    var = sum((t - mt) ** 2 for t, _ in points)
    slope = sum((t - mt) * (v - mv) for t, v in points) / var if var else 0.0
    return slope, mv - slope * mt


def predict_linear(times, values, window, future):
    slope, intercept = linear(times, values, window)
    return [intercept + slope * t for t in future]


def holt(values, sf, tf, steps):
    level, trend = values[0], (values[1] - values[0]) if len(values) > 1 else 0.0
    factor = tf if tf is not None else 0.1
    for value in values[1:]:
        previous = level
        level = sf * value + (1 - sf) * (level + trend)
        trend = factor * (level - previous) + (1 - factor) * trend
    if tf is None:
        return [level for _ in steps]  # what double_exponential_smoothing itself returns
    return [level + h * trend for h in steps]


def steps_of(times, future):
    step = statistics.median(b - a for a, b in zip(times, times[1:]))
    return [(t - times[-1]) / step for t in future]


def mae(forecast, actual):
    return sum(abs(f - a) for f, a in zip(forecast, actual)) / len(actual)


def choose(times, values, make):
    """The settings `make(times, values, future)` should use, chosen on the newest fifth."""
    cut = len(values) * 4 // 5
    return min(make.settings(times[:cut]), key=lambda s: mae(make(times[:cut], values[:cut], times[cut:], s), values[cut:]))


def linear_model(times, values, future, window):
    return predict_linear(times, values, window, future)


linear_model.settings = lambda times: sorted(
    {3600, 6 * 3600, 86400, 3 * 86400, 7 * 86400}
    | {(times[-1] - times[0]) * part for part in (1 / 8, 1 / 4, 1 / 2, 1)})


def holt_model(times, values, future, s):
    return holt(values, s[0], s[1], steps_of(times, future))


holt_model.settings = lambda times: [(a, b) for a in (0.05, 0.1, 0.2, 0.3, 0.5, 0.8) for b in (None, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8)]


def ward_forecast(times, values, future):
    with tempfile.TemporaryDirectory() as work:
        history = os.path.join(work, "history.csv")
        with open(history, "w") as out:
            out.write("timestamp,value\n")
            for t, v in zip(times, values):
                out.write(f"{t:.0f},{v!r}\n")
        horizon = future[-1] - times[-1] + 1
        output = subprocess.run(
            [WARD, "forecast", "--input", history, "--horizon", f"{int(horizon)}s"],
            check=True, capture_output=True, text=True,
        ).stdout
    rows = list(csv.DictReader(output.splitlines()))
    points = [(epoch(r["timestamp"]), float(r["forecast"])) for r in rows]
    # The forecast nearest each future time (Ward steps at the history's usual interval).
    out, i = [], 0
    for t in future:
        while i + 1 < len(points) and abs(points[i + 1][0] - t) <= abs(points[i][0] - t):
            i += 1
        out.append(points[i][1])
    return out


def main():
    results = []
    for root, _, files in sorted(os.walk(DATA)):
        for name in sorted(files):
            if not name.endswith(".csv"):
                continue
            rows = list(csv.DictReader(open(os.path.join(root, name))))
            times = [epoch(r["timestamp"]) for r in rows]
            values = [float(r["value"]) for r in rows]
            cut = len(values) * 4 // 5
            history_t, history_v, future, actual = times[:cut], values[:cut], times[cut:], values[cut:]
            scale = sum(abs(b - a) for a, b in zip(history_v, history_v[1:])) / (len(history_v) - 1)
            if scale == 0:
                continue  # a flat history: MASE is undefined
            window = choose(history_t, history_v, linear_model)
            smoothing = choose(history_t, history_v, holt_model)
            errors = {
                "ward": mae(ward_forecast(history_t, history_v, future), actual) / scale,
                "predict_linear": mae(linear_model(history_t, history_v, future, window), actual) / scale,
                "holt": mae(holt_model(history_t, history_v, future, smoothing), actual) / scale,
            }
            results.append((os.path.relpath(os.path.join(root, name), DATA), errors))
            print(f"{results[-1][0]:58s} " + " ".join(f"{k}={v:8.2f}" for k, v in errors.items()), file=sys.stderr)
    for stat, f in (("mean", statistics.mean), ("median", statistics.median), ("geometric mean", statistics.geometric_mean)):
        row = {k: f([e[k] for _, e in results]) for k in ("ward", "predict_linear", "holt")}
        best = min(row["predict_linear"], row["holt"])
        print(f"{stat:15s} MASE ward {row['ward']:.3f}  predict_linear {row['predict_linear']:.3f}  "
              f"holt {row['holt']:.3f}  ward/best {row['ward'] / best:.2f}  ({len(results)} series)")


if __name__ == "__main__":
    main()
