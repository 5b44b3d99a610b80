//! Prometheus remote write: every stored sample is also sent to a Prometheus-compatible
//! endpoint (Prometheus with its remote-write receiver, Mimir, VictoriaMetrics), as a
//! snappy-compressed protobuf `WriteRequest` (remote write 1.0).
//!
//! Samples wait in a bounded queue; a batch that fails is retried with backoff a few times
//! and then dropped, so an endpoint that is down costs memory up to the queue's bound and
//! never blocks sampling.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::mpsc;
use ward_tsdb::SeriesKey;

/// Samplings that may wait for the endpoint before new ones are dropped.
const QUEUE: usize = 1024;
/// Samples sent in one request at most.
const MAXIMUM_SAMPLES: usize = 10_000;
const ATTEMPTS: u32 = 4;

/// One sampling's samples: series, milliseconds since the epoch, value.
pub(crate) type Batch = Vec<(SeriesKey, i64, f64)>;

/// The sending side: hands samplings to the writer task.
#[derive(Debug, Clone)]
pub(crate) struct RemoteWriter {
    queue: mpsc::Sender<Batch>,
}

impl RemoteWriter {
    /// Starts the writer task for `url`.
    pub fn start(url: String) -> RemoteWriter {
        let (queue, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(run(url, receiver));
        RemoteWriter { queue }
    }

    /// Queues one sampling; dropped (with a warning) while the queue is full.
    pub fn send(&self, batch: Batch) {
        if self.queue.try_send(batch).is_err() {
            tracing::warn!("the remote-write queue is full; a sampling is dropped");
        }
    }
}

async fn run(url: String, mut receiver: mpsc::Receiver<Batch>) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            tracing::warn!(%error, "remote write cannot start");
            return;
        }
    };
    while let Some(first) = receiver.recv().await {
        // Whatever else is waiting goes in the same request.
        let mut samples = first;
        while samples.len() < MAXIMUM_SAMPLES {
            match receiver.try_recv() {
                Ok(more) => samples.extend(more),
                Err(_) => break,
            }
        }
        let body = match snap::raw::Encoder::new().compress_vec(&write_request(&samples)) {
            Ok(body) => body,
            Err(error) => {
                tracing::warn!(%error, "cannot compress a remote-write request");
                continue;
            }
        };
        for attempt in 0..ATTEMPTS {
            let sent = client
                .post(&url)
                .header("Content-Encoding", "snappy")
                .header("Content-Type", "application/x-protobuf")
                .header("User-Agent", "ward")
                .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(response) if response.status().is_success() => break,
                // A 4xx is the request's fault: sending it again changes nothing.
                Ok(response) if response.status().is_client_error() => {
                    tracing::warn!(status = %response.status(), %url, "remote write refused a batch");
                    break;
                }
                outcome => {
                    let reason = match outcome {
                        Ok(response) => response.status().to_string(),
                        Err(error) => error.to_string(),
                    };
                    if attempt + 1 == ATTEMPTS {
                        tracing::warn!(%reason, %url, "remote write failed; a batch is dropped");
                    } else {
                        tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
                    }
                }
            }
        }
    }
}

/// A protobuf `prometheus.WriteRequest` of `samples`, one time series per series key, its
/// labels sorted with `__name__` among them.
pub(crate) fn write_request(samples: &[(SeriesKey, i64, f64)]) -> Vec<u8> {
    let mut series: BTreeMap<&SeriesKey, Vec<(i64, f64)>> = BTreeMap::new();
    for (key, time, value) in samples {
        series.entry(key).or_default().push((*time, *value));
    }
    let mut request = Vec::new();
    for (key, points) in series {
        let mut labels: Vec<(&str, &str)> = key
            .labels
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        labels.push(("__name__", key.name.as_str()));
        labels.sort_unstable();
        let mut timeseries = Vec::new();
        for (name, value) in labels {
            let mut label = Vec::new();
            bytes_field(&mut label, 1, name.as_bytes());
            bytes_field(&mut label, 2, value.as_bytes());
            bytes_field(&mut timeseries, 1, &label);
        }
        for (time, value) in points {
            let mut sample = Vec::new();
            sample.push(1 << 3 | 1); // value: double
            sample.extend_from_slice(&value.to_le_bytes());
            sample.push(2 << 3); // timestamp: int64
            varint(&mut sample, time as u64);
            bytes_field(&mut timeseries, 2, &sample);
        }
        bytes_field(&mut request, 1, &timeseries);
    }
    request
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn bytes_field(out: &mut Vec<u8>, field: u8, bytes: &[u8]) {
    out.push(field << 3 | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_request_is_protobuf_as_prometheus_reads_it() {
        let key = SeriesKey::new("m", &[("a", "b")]);
        let request = write_request(&[(key, 1000, 1.5)]);
        let sample = {
            let mut sample = vec![0x09];
            sample.extend_from_slice(&1.5f64.to_le_bytes());
            sample.extend_from_slice(&[0x10, 0xe8, 0x07]);
            sample
        };
        let mut timeseries = Vec::new();
        // Labels sorted by name: __name__ before a.
        timeseries.extend_from_slice(&[0x0a, 13, 0x0a, 8]);
        timeseries.extend_from_slice(b"__name__");
        timeseries.extend_from_slice(&[0x12, 1, b'm']);
        timeseries.extend_from_slice(&[0x0a, 6, 0x0a, 1, b'a', 0x12, 1, b'b']);
        timeseries.extend_from_slice(&[0x12, sample.len() as u8]);
        timeseries.extend_from_slice(&sample);
        let mut expected = vec![0x0a, timeseries.len() as u8];
        expected.extend_from_slice(&timeseries);
        assert_eq!(request, expected);
    }
}
