//! Ward's embedded time-series store: Gorilla-compressed chunks in two-hour block files, a
//! write-ahead log for the newest samples, and a cap on the number of series.
//!
//! Files under the store's directory, each a sequence of checksummed records
//! (`len u32 | crc32 u32 | payload`), so a write cut short by a crash is found and cut off
//! at the next open, never misread:
//!
//! - `series`: one record per series (id, name, labels), appended before any sample of it;
//! - `wal`: one record per [`Store::append`] batch, the samples not yet in a chunk;
//! - `blocks/START`: sealed chunks (series id, first and last time, count, Gorilla bytes)
//!   whose first sample falls in the two hours after START (milliseconds).
//!
//! A kill at any point loses at most the batch being written: the WAL is replayed at open,
//! skipping samples a block already holds. Blocks older than the retention are folded into
//! the downsampled tiers (`tiers.rs`) and deleted; queries read the tiers where raw samples
//! no longer reach.

pub mod gorilla;
pub mod tiers;

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use gorilla::Encoder;
use tiers::Bucket;
pub use tiers::Tier;

/// A series' samples: (milliseconds since the epoch, value), oldest first.
pub type Samples = Vec<(i64, f64)>;

/// A series: its metric name and labels (sorted by label name).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    pub name: String,
    pub labels: Vec<(String, String)>,
}

impl SeriesKey {
    pub fn new(name: &str, labels: &[(&str, &str)]) -> SeriesKey {
        let mut labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        labels.sort();
        SeriesKey {
            name: name.to_owned(),
            labels,
        }
    }

    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn matches(&self, name: &str, matchers: &[(String, String)]) -> bool {
        self.name == name
            && matchers
                .iter()
                .all(|(k, v)| self.label(k) == Some(v.as_str()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("the store holds its limit of {limit} series; series {name} is not stored (raise tsdb.max_series, or drop labels that take many values)")]
    TooManySeries { limit: usize, name: String },
    #[error("step must be more than 0 and give at most 11,000 points per series")]
    Step,
}

/// How a step's samples become one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregation {
    Avg,
    Min,
    Max,
    Sum,
    Last,
    Count,
}

/// The store's limits.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Series beyond this many are refused.
    pub max_series: usize,
    /// Samples per chunk.
    pub chunk_samples: u32,
    /// Milliseconds a sample is kept.
    pub retention_ms: i64,
    /// WAL size past which every open chunk is sealed and the WAL begins again.
    pub wal_bytes: u64,
    /// Where raw samples go past `retention_ms`, finest first.
    pub tiers: [Tier; 2],
}

impl Default for Options {
    fn default() -> Options {
        Options {
            max_series: 100_000,
            chunk_samples: 120,
            retention_ms: 2 * 86_400_000,
            wal_bytes: 8 << 20,
            tiers: [
                Tier {
                    step_ms: 60_000,
                    block_ms: 86_400_000,
                    retention_ms: 30 * 86_400_000,
                },
                Tier {
                    step_ms: 3_600_000,
                    block_ms: 30 * 86_400_000,
                    retention_ms: 365 * 86_400_000,
                },
            ],
        }
    }
}

/// Milliseconds of one block file.
const BLOCK_MS: i64 = 2 * 3_600_000;

/// The start of the block holding `time`: a block covers `(START, START + 2 h]`, as a
/// query's step and a tier's bucket do, so no bucket of a tier spans two blocks.
fn block_of(time: i64) -> i64 {
    (time - 1).div_euclid(BLOCK_MS) * BLOCK_MS
}

#[derive(Debug)]
struct Series {
    key: SeriesKey,
    head: Encoder,
    /// The newest time stored in a block (samples up to it are not replayed from the WAL).
    sealed_until: i64,
}

impl Series {
    /// Whether a sample at `time` is new: after everything the series holds.
    fn takes(&self, time: i64) -> bool {
        time > self.sealed_until && (self.head.is_empty() || time > self.head.last_time())
    }
}

/// The store. One writer; queries read the blocks and the open chunks.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    options: Options,
    index: HashMap<SeriesKey, u32>,
    series: Vec<Series>,
    series_file: File,
    wal: File,
    wal_size: u64,
}

// --- records -------------------------------------------------------------------------

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (!(crc & 1)).wrapping_add(1));
        }
    }
    !crc
}

fn record(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// The whole records of `path`, cutting off (on disk) a torn or corrupt tail.
fn read_records(path: &Path) -> io::Result<Vec<Vec<u8>>> {
    let (records, intact) = read_intact(path)?;
    if let Some(intact) = intact {
        OpenOptions::new().write(true).open(path)?.set_len(intact)?;
    }
    Ok(records)
}

/// The whole records of `path`, and the length of its intact part when a torn or corrupt
/// tail follows it; the file is left as it is, for readers that run beside its writer.
fn read_intact(path: &Path) -> io::Result<(Vec<Vec<u8>>, Option<u64>)> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut file) => file.read_to_end(&mut bytes)?,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), None)),
        Err(error) => return Err(error),
    };
    let mut records = Vec::new();
    let mut at = 0;
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap());
        let Some(payload) = bytes.get(at + 8..at + 8 + len) else {
            break;
        };
        if crc32(payload) != crc {
            break;
        }
        records.push(payload.to_vec());
        at += 8 + len;
    }
    Ok((records, (at < bytes.len()).then_some(at as u64)))
}

/// A little-endian reader over a record's payload.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn bytes(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u32(&mut self) -> Option<u32> {
        self.bytes(4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
    }
    fn u64(&mut self) -> Option<u64> {
        self.bytes(8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
    }
    fn text(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        self.bytes(n)
            .and_then(|b| String::from_utf8(b.to_vec()).ok())
    }
}

fn put_text(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u32).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
}

/// A sealed chunk as stored in a block.
struct StoredChunk {
    id: u32,
    first: i64,
    last: i64,
    count: u32,
    bytes: Vec<u8>,
}

impl StoredChunk {
    fn parse(payload: &[u8]) -> Option<StoredChunk> {
        let mut cursor = Cursor(payload);
        let id = cursor.u32()?;
        let first = cursor.u64()? as i64;
        let last = cursor.u64()? as i64;
        let count = cursor.u32()?;
        let bytes = cursor.0.to_vec();
        Some(StoredChunk {
            id,
            first,
            last,
            count,
            bytes,
        })
    }
}

// --- the store -------------------------------------------------------------------------

impl Store {
    /// Opens (or creates) the store in `dir`, recovering from a crash.
    pub fn open(dir: &Path, options: Options) -> Result<Store, Error> {
        fs::create_dir_all(dir.join("blocks"))?;
        let mut store = Store {
            dir: dir.to_owned(),
            options,
            index: HashMap::new(),
            series: Vec::new(),
            series_file: OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("series"))?,
            wal: OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("wal"))?,
            wal_size: 0,
        };
        for payload in read_records(&dir.join("series"))? {
            let mut cursor = Cursor(&payload);
            let (Some(id), Some(name), Some(count)) = (cursor.u32(), cursor.text(), cursor.u32())
            else {
                continue;
            };
            let labels = (0..count)
                .map_while(|_| Some((cursor.text()?, cursor.text()?)))
                .collect();
            let key = SeriesKey { name, labels };
            if id as usize == store.series.len() {
                store.index.insert(key.clone(), id);
                store.series.push(Series {
                    key,
                    head: Encoder::new(),
                    sealed_until: i64::MIN,
                });
            }
        }
        for (_, path) in store.blocks()? {
            for payload in read_records(&path)? {
                if let Some(chunk) = StoredChunk::parse(&payload) {
                    if let Some(series) = store.series.get_mut(chunk.id as usize) {
                        series.sealed_until = series.sealed_until.max(chunk.last);
                    }
                }
            }
        }
        let wal = dir.join("wal");
        for payload in read_records(&wal)? {
            let mut cursor = Cursor(&payload);
            while let (Some(id), Some(time), Some(value)) =
                (cursor.u32(), cursor.u64(), cursor.u64())
            {
                store.push(id, time as i64, f64::from_bits(value))?;
            }
        }
        store.wal_size = fs::metadata(&wal)?.len();
        Ok(store)
    }

    /// The block files, oldest first.
    fn blocks(&self) -> io::Result<BTreeMap<i64, PathBuf>> {
        blocks(&self.dir)
    }

    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// The id of `key`, registering it (durably) if new.
    fn id(&mut self, key: &SeriesKey) -> Result<u32, Error> {
        if let Some(&id) = self.index.get(key) {
            return Ok(id);
        }
        if self.series.len() >= self.options.max_series {
            return Err(Error::TooManySeries {
                limit: self.options.max_series,
                name: key.name.clone(),
            });
        }
        let id = self.series.len() as u32;
        let mut payload = Vec::new();
        payload.extend_from_slice(&id.to_le_bytes());
        put_text(&mut payload, &key.name);
        payload.extend_from_slice(&(key.labels.len() as u32).to_le_bytes());
        for (k, v) in &key.labels {
            put_text(&mut payload, k);
            put_text(&mut payload, v);
        }
        self.series_file.write_all(&record(&payload))?;
        self.index.insert(key.clone(), id);
        self.series.push(Series {
            key: key.clone(),
            head: Encoder::new(),
            sealed_until: i64::MIN,
        });
        Ok(id)
    }

    /// Adds a sample to its series' open chunk (not the WAL), sealing a full chunk.
    /// Samples not after the series' newest are dropped, as Prometheus drops them.
    fn push(&mut self, id: u32, time: i64, value: f64) -> Result<bool, Error> {
        let Some(series) = self.series.get_mut(id as usize) else {
            return Ok(false);
        };
        if !series.takes(time) {
            return Ok(false);
        }
        // A chunk ends with its block, so a block's chunks end before the next block starts.
        if !series.head.is_empty() && block_of(time) != block_of(series.head.first_time()) {
            self.seal(id)?;
        }
        let series = &mut self.series[id as usize];
        series.head.push(time, value);
        if series.head.len() >= self.options.chunk_samples {
            self.seal(id)?;
        }
        Ok(true)
    }

    /// Writes series `id`'s open chunk to its block.
    fn seal(&mut self, id: u32) -> Result<(), Error> {
        let series = &mut self.series[id as usize];
        if series.head.is_empty() {
            return Ok(());
        }
        let head = std::mem::take(&mut series.head);
        series.sealed_until = head.last_time();
        let mut payload = Vec::with_capacity(head.bytes().len() + 24);
        payload.extend_from_slice(&id.to_le_bytes());
        payload.extend_from_slice(&(head.first_time() as u64).to_le_bytes());
        payload.extend_from_slice(&(head.last_time() as u64).to_le_bytes());
        payload.extend_from_slice(&head.len().to_le_bytes());
        payload.extend_from_slice(head.bytes());
        let start = block_of(head.first_time());
        let mut block = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("blocks").join(start.to_string()))?;
        block.write_all(&record(&payload))?;
        Ok(())
    }

    /// Stores one collection's samples: one WAL write for the batch. Returns how many were
    /// stored (a sample not after its series' newest is dropped). A series past the limit
    /// is refused, the rest of the batch stored.
    pub fn append(&mut self, batch: &[(SeriesKey, i64, f64)]) -> Result<usize, Error> {
        let mut payload = Vec::with_capacity(batch.len() * 20);
        let mut stored = 0;
        let mut refused = None;
        for (key, time, value) in batch {
            let id = match self.id(key) {
                Ok(id) => id,
                Err(error @ Error::TooManySeries { .. }) => {
                    refused.get_or_insert(error);
                    continue;
                }
                Err(error) => return Err(error),
            };
            let series = &self.series[id as usize];
            if !series.takes(*time) {
                continue;
            }
            payload.extend_from_slice(&id.to_le_bytes());
            payload.extend_from_slice(&(*time as u64).to_le_bytes());
            payload.extend_from_slice(&value.to_bits().to_le_bytes());
            stored += 1;
        }
        if !payload.is_empty() {
            let record = record(&payload);
            self.wal.write_all(&record)?;
            self.wal_size += record.len() as u64;
            let mut cursor = Cursor(&payload);
            while let (Some(id), Some(time), Some(value)) =
                (cursor.u32(), cursor.u64(), cursor.u64())
            {
                self.push(id, time as i64, f64::from_bits(value))?;
            }
        }
        if self.wal_size > self.options.wal_bytes {
            self.checkpoint()?;
        }
        match refused {
            Some(error) if stored == 0 => Err(error),
            _ => Ok(stored),
        }
    }

    /// Seals every open chunk and starts the WAL again.
    pub fn checkpoint(&mut self) -> Result<(), Error> {
        for id in 0..self.series.len() as u32 {
            self.seal(id)?;
        }
        let fresh = self.dir.join("wal.new");
        File::create(&fresh)?.sync_all()?;
        fs::rename(&fresh, self.dir.join("wal"))?;
        self.wal = OpenOptions::new().append(true).open(self.dir.join("wal"))?;
        self.wal_size = 0;
        Ok(())
    }

    /// Folds raw blocks that end before `now - retention` into the first tier and deletes
    /// them, and each tier's blocks past its retention into the next; see [`expire`].
    pub fn expire(&mut self, now_ms: i64) -> Result<usize, Error> {
        expire(&self.dir, &self.options, now_ms)
    }

    /// The store's directory and options, for [`expire`] on another thread.
    pub fn location(&self) -> (PathBuf, Options) {
        (self.dir.clone(), self.options)
    }

    /// The samples in [start, end] of every series named `name` whose labels include all
    /// of `matchers`, by series.
    pub fn select(
        &self,
        name: &str,
        matchers: &[(String, String)],
        start: i64,
        end: i64,
    ) -> Result<Vec<(SeriesKey, Samples)>, Error> {
        Ok(self
            .select_ids(name, matchers, start, end)?
            .into_iter()
            .map(|(id, samples)| (self.series[id as usize].key.clone(), samples))
            .collect())
    }

    /// [`Store::select`] by series id.
    fn select_ids(
        &self,
        name: &str,
        matchers: &[(String, String)],
        start: i64,
        end: i64,
    ) -> Result<Vec<(u32, Samples)>, Error> {
        let ids: Vec<u32> = (0..self.series.len() as u32)
            .filter(|&id| self.series[id as usize].key.matches(name, matchers))
            .collect();
        let mut found: BTreeMap<u32, Vec<(i64, f64)>> =
            ids.iter().map(|&id| (id, Vec::new())).collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        for (block_start, path) in self.blocks()? {
            if block_start > end || block_start + BLOCK_MS < start {
                continue;
            }
            let mut bytes = Vec::new();
            // A block folded into a tier meanwhile is gone: the tier answers for it.
            match File::open(&path) {
                Ok(mut file) => file.read_to_end(&mut bytes)?,
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => return Err(error.into()),
            };
            let mut at = 0;
            while at + 8 <= bytes.len() {
                let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
                let Some(payload) = bytes.get(at + 8..at + 8 + len) else {
                    break;
                };
                at += 8 + len;
                let Some(chunk) = StoredChunk::parse(payload) else {
                    continue;
                };
                let Some(samples) = found.get_mut(&chunk.id) else {
                    continue;
                };
                if chunk.last < start || chunk.first > end {
                    continue;
                }
                if let Some(decoded) = gorilla::decode(&chunk.bytes, chunk.count) {
                    samples.extend(
                        decoded
                            .into_iter()
                            .filter(|(t, _)| (start..=end).contains(t)),
                    );
                }
            }
        }
        for (&id, samples) in &mut found {
            let head = &self.series[id as usize].head;
            if !head.is_empty() && head.last_time() >= start && head.first_time() <= end {
                if let Some(decoded) = gorilla::decode(head.bytes(), head.len()) {
                    samples.extend(
                        decoded
                            .into_iter()
                            .filter(|(t, _)| (start..=end).contains(t)),
                    );
                }
            }
            samples.sort_by_key(|(t, _)| *t);
            samples.dedup_by_key(|(t, _)| *t);
        }
        Ok(found.into_iter().collect())
    }

    /// [`Store::select`], each series' samples gathered into steps of `step` ms from `start`
    /// (a step's value stands for the samples in `(t - step, t]`), steps with no sample left out.
    pub fn query(
        &self,
        name: &str,
        matchers: &[(String, String)],
        start: i64,
        end: i64,
        step: i64,
        aggregation: Aggregation,
    ) -> Result<Vec<(SeriesKey, Samples)>, Error> {
        if step <= 0 || end.saturating_sub(start) / step > 11_000 {
            return Err(Error::Step);
        }
        let from = start.saturating_sub(step - 1);
        let raw = self.select_ids(name, matchers, from, end)?;
        // Where raw samples no longer reach, the tiers do, finest first.
        let mut reach: HashMap<u32, i64> = raw
            .iter()
            .map(|(id, samples)| (*id, samples.first().map_or(i64::MAX, |(time, _)| *time)))
            .collect();
        let mut older: HashMap<u32, Vec<(i64, Bucket)>> = HashMap::new();
        for tier in self
            .options
            .tiers
            .iter()
            .filter(|tier| tier.retention_ms > 0)
        {
            let mut earliest: HashMap<u32, i64> = HashMap::new();
            for block in tiers::blocks(&self.dir, tier)? {
                if block > end || block + tier.block_ms < from {
                    continue;
                }
                let wanted = |id: u32| reach.contains_key(&id);
                for (id, buckets) in tiers::read_block(&self.dir, tier, block, &wanted, from, end)?
                {
                    let limit = reach.get(&id).copied().unwrap_or(i64::MAX);
                    for (time, bucket) in buckets {
                        // A bucket is used whole, only where the finer data does not reach.
                        if time < limit {
                            older.entry(id).or_default().push((time, bucket));
                            let first = earliest.entry(id).or_insert(time);
                            *first = (*first).min(time);
                        }
                    }
                }
            }
            for (id, first) in earliest {
                if let Some(limit) = reach.get_mut(&id) {
                    *limit = (*limit).min(first);
                }
            }
        }
        Ok(raw
            .into_iter()
            .map(|(id, samples)| {
                let mut points: Vec<(i64, Bucket)> = older.remove(&id).unwrap_or_default();
                points.extend(
                    samples
                        .into_iter()
                        .map(|(time, value)| (time, tiers::sample_bucket(value))),
                );
                points.sort_by_key(|(time, _)| *time);
                points.dedup_by_key(|(time, _)| *time);
                let mut stepped: Vec<(i64, f64)> = Vec::new();
                let mut current: Option<(i64, Bucket)> = None; // (step end, bucket)
                for (time, bucket) in points {
                    if time < from {
                        continue;
                    }
                    let at = start + (time - start + step - 1).div_euclid(step) * step;
                    match &mut current {
                        Some((end, acc)) if *end == at => tiers::merge(acc, &bucket),
                        _ => {
                            if let Some(done) = current.take() {
                                stepped.push(finish(done, aggregation));
                            }
                            current = Some((at, bucket));
                        }
                    }
                }
                if let Some(done) = current {
                    stepped.push(finish(done, aggregation));
                }
                (self.series[id as usize].key.clone(), stepped)
            })
            .collect())
    }
}

/// Folds raw blocks that end before `now - retention` into the first tier and deletes
/// them, and each tier's blocks past its retention into the next (the last tier's are
/// deleted). Returns how many raw blocks went. It touches only sealed, old files, so it runs
/// beside the store's writer and readers: a reader meets a block either whole or gone, and
/// a tier's records either whole or not yet there.
pub fn expire(dir: &Path, options: &Options, now_ms: i64) -> Result<usize, Error> {
    let tiers = options.tiers;
    let mut removed = 0;
    for (start, path) in blocks(dir)? {
        if start + BLOCK_MS >= now_ms - options.retention_ms {
            continue;
        }
        if tiers[0].retention_ms > 0 {
            let mut points = Vec::new();
            for payload in read_intact(&path)?.0 {
                let Some(chunk) = StoredChunk::parse(&payload) else {
                    continue;
                };
                for (time, value) in gorilla::decode(&chunk.bytes, chunk.count).unwrap_or_default()
                {
                    points.push((chunk.id, time, tiers::sample_bucket(value)));
                }
            }
            points.sort_by_key(|(id, time, _)| (*id, *time));
            tiers::write(dir, &tiers[0], &tiers::fold(points, tiers[0].step_ms))?;
        }
        fs::remove_file(path)?;
        removed += 1;
    }
    for (index, tier) in tiers.iter().enumerate() {
        for block in tiers::blocks(dir, tier)? {
            if block + tier.block_ms >= now_ms - tier.retention_ms {
                continue;
            }
            if let Some(next) = tiers.get(index + 1).filter(|next| next.retention_ms > 0) {
                let folded = tiers::read_block(dir, tier, block, &|_| true, i64::MIN, i64::MAX)?;
                let points = folded.into_iter().flat_map(|(id, buckets)| {
                    buckets
                        .into_iter()
                        .map(move |(time, bucket)| (id, time, bucket))
                });
                tiers::write(dir, next, &tiers::fold(points, next.step_ms))?;
            }
            tiers::remove_block(dir, tier, block)?;
        }
    }
    Ok(removed)
}

/// The block files under `dir`, oldest first.
fn blocks(dir: &Path) -> io::Result<BTreeMap<i64, PathBuf>> {
    let mut blocks = BTreeMap::new();
    for entry in fs::read_dir(dir.join("blocks"))? {
        let path = entry?.path();
        if let Some(start) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<i64>().ok())
        {
            blocks.insert(start, path);
        }
    }
    Ok(blocks)
}

fn finish((at, bucket): (i64, Bucket), aggregation: Aggregation) -> (i64, f64) {
    let [min, max, sum, count, last] = bucket;
    let value = match aggregation {
        Aggregation::Avg => sum / count,
        Aggregation::Min => min,
        Aggregation::Max => max,
        Aggregation::Sum => sum,
        Aggregation::Last => last,
        Aggregation::Count => count,
    };
    (at, value)
}

#[cfg(test)]
mod tests;
