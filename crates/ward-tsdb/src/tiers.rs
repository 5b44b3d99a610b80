//! Downsampled tiers: when raw samples pass their retention they are folded into buckets of
//! a coarser step (by default one minute, kept 30 days, then one hour, kept a year), each
//! bucket keeping the min, max, sum, count and last of what it covers, so every query
//! aggregation stays exact over whole buckets.
//!
//! A tier's files are `tiers/STEP/KIND/START`, one per kind (min, max, sum, count, last)
//! and tier block (covering `(START, START + block]`), in the same checksummed chunk records as raw blocks. A bucket at time `t`
//! covers `(t - step, t]`, as a query's step does, so buckets fall whole into steps that
//! are multiples of theirs. Folding the same source twice (after a crash between writing a
//! tier and deleting its source) writes equal buckets again, which a read keeps once.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::gorilla::{self, Encoder};
use crate::{read_intact, record, StoredChunk};

/// One downsampled tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tier {
    /// Milliseconds per bucket.
    pub step_ms: i64,
    /// Milliseconds of one tier file.
    pub block_ms: i64,
    /// Milliseconds a bucket is kept; 0 turns the tier off.
    pub retention_ms: i64,
}

/// What each bucket keeps, one file per kind.
pub(crate) const KINDS: [&str; 5] = ["min", "max", "sum", "count", "last"];

/// A bucket (or one sample, as `[v, v, v, 1, v]`): min, max, sum, count, last.
pub(crate) type Bucket = [f64; 5];

pub(crate) fn sample_bucket(value: f64) -> Bucket {
    [value, value, value, 1.0, value]
}

/// `later` folded into `earlier` (which comes first in time).
pub(crate) fn merge(earlier: &mut Bucket, later: &Bucket) {
    earlier[0] = earlier[0].min(later[0]);
    earlier[1] = earlier[1].max(later[1]);
    earlier[2] += later[2];
    earlier[3] += later[3];
    earlier[4] = later[4];
}

/// Per series id, buckets by start time.
pub(crate) type Folded = BTreeMap<u32, BTreeMap<i64, Bucket>>;

/// Folds `(id, time, bucket)` points, in time order per series, into buckets of `step`,
/// each at the end of the span it covers.
pub(crate) fn fold(points: impl IntoIterator<Item = (u32, i64, Bucket)>, step: i64) -> Folded {
    let mut folded = Folded::new();
    for (id, time, bucket) in points {
        let end = (time + step - 1).div_euclid(step) * step;
        folded
            .entry(id)
            .or_default()
            .entry(end)
            .and_modify(|existing| merge(existing, &bucket))
            .or_insert(bucket);
    }
    folded
}

fn tier_dir(root: &Path, tier: &Tier) -> PathBuf {
    root.join("tiers").join(tier.step_ms.to_string())
}

/// The tier's block starts, oldest first (those whose `min` file exists).
pub(crate) fn blocks(root: &Path, tier: &Tier) -> io::Result<Vec<i64>> {
    let dir = tier_dir(root, tier).join(KINDS[0]);
    let mut starts = Vec::new();
    match fs::read_dir(&dir) {
        Ok(entries) => {
            for entry in entries {
                if let Some(start) = entry?
                    .file_name()
                    .to_str()
                    .and_then(|name| name.parse::<i64>().ok())
                {
                    starts.push(start);
                }
            }
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    starts.sort_unstable();
    Ok(starts)
}

/// Appends `folded` to the tier's files, one chunk per series and kind per tier block.
pub(crate) fn write(root: &Path, tier: &Tier, folded: &Folded) -> io::Result<()> {
    // Per tier block, per kind, the records to append.
    let mut out: BTreeMap<(i64, usize), Vec<u8>> = BTreeMap::new();
    for (&id, buckets) in folded {
        let mut by_block: BTreeMap<i64, Vec<(i64, &Bucket)>> = BTreeMap::new();
        for (&time, bucket) in buckets {
            by_block
                .entry((time - 1).div_euclid(tier.block_ms) * tier.block_ms)
                .or_default()
                .push((time, bucket));
        }
        for (block, points) in by_block {
            for (kind, _) in KINDS.iter().enumerate() {
                let mut encoder = Encoder::new();
                for (time, bucket) in &points {
                    encoder.push(*time, bucket[kind]);
                }
                let mut payload = Vec::with_capacity(encoder.bytes().len() + 24);
                payload.extend_from_slice(&id.to_le_bytes());
                payload.extend_from_slice(&(encoder.first_time() as u64).to_le_bytes());
                payload.extend_from_slice(&(encoder.last_time() as u64).to_le_bytes());
                payload.extend_from_slice(&encoder.len().to_le_bytes());
                payload.extend_from_slice(encoder.bytes());
                out.entry((block, kind))
                    .or_default()
                    .extend_from_slice(&record(&payload));
            }
        }
    }
    for ((block, kind), bytes) in out {
        let dir = tier_dir(root, tier).join(KINDS[kind]);
        fs::create_dir_all(&dir)?;
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(block.to_string()))?;
        file.write_all(&bytes)?;
        file.sync_data()?;
    }
    Ok(())
}

/// The buckets of one tier block, for the series `wanted` admits, in `[start, end]`.
pub(crate) fn read_block(
    root: &Path,
    tier: &Tier,
    block: i64,
    wanted: &dyn Fn(u32) -> bool,
    start: i64,
    end: i64,
) -> io::Result<Folded> {
    let mut kinds: Vec<BTreeMap<(u32, i64), f64>> = Vec::with_capacity(KINDS.len());
    for kind in KINDS {
        let path = tier_dir(root, tier).join(kind).join(block.to_string());
        let mut values = BTreeMap::new();
        // Beside a fold that may be appending: whole records only, the file untouched.
        let records = match read_intact(&path) {
            Ok((records, _)) => records,
            Err(error) if error.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(error) => return Err(error),
        };
        for payload in records {
            let Some(chunk) = StoredChunk::parse(&payload) else {
                continue;
            };
            if !wanted(chunk.id) || chunk.last < start || chunk.first > end {
                continue;
            }
            for (time, value) in gorilla::decode(&chunk.bytes, chunk.count).unwrap_or_default() {
                if (start..=end).contains(&time) {
                    values.insert((chunk.id, time), value);
                }
            }
        }
        kinds.push(values);
    }
    // A bucket counts only where every kind has it (a crash may have cut a write short).
    let mut folded = Folded::new();
    for (&(id, time), &min) in &kinds[0] {
        let others: Option<Vec<f64>> = kinds[1..]
            .iter()
            .map(|values| values.get(&(id, time)).copied())
            .collect();
        if let Some(others) = others {
            folded
                .entry(id)
                .or_default()
                .insert(time, [min, others[0], others[1], others[2], others[3]]);
        }
    }
    Ok(folded)
}

/// Deletes a tier block's files.
pub(crate) fn remove_block(root: &Path, tier: &Tier, block: i64) -> io::Result<()> {
    for kind in KINDS {
        match fs::remove_file(tier_dir(root, tier).join(kind).join(block.to_string())) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
    }
    Ok(())
}
