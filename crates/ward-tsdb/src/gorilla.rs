//! Gorilla compression (Pelkonen et al., VLDB 2015): timestamps as delta-of-delta, values
//! as the XOR with the previous value, each in as few bits as it needs.

/// Bits appended to a byte vector, most significant first.
#[derive(Debug, Clone, Default)]
struct BitWriter {
    bytes: Vec<u8>,
    /// Bits used in the last byte (0 when it is full or there is none).
    used: u8,
}

impl BitWriter {
    fn push(&mut self, value: u64, bits: u8) {
        for shift in (0..bits).rev() {
            if self.used == 0 {
                self.bytes.push(0);
            }
            let bit = ((value >> shift) & 1) as u8;
            let last = self.bytes.len() - 1;
            self.bytes[last] |= bit << (7 - self.used);
            self.used = (self.used + 1) % 8;
        }
    }
}

/// Bits read back from a byte slice.
#[derive(Debug, Clone)]
struct BitReader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl BitReader<'_> {
    fn take(&mut self, bits: u8) -> Option<u64> {
        let mut value = 0u64;
        for _ in 0..bits {
            let byte = *self.bytes.get(self.position / 8)?;
            let bit = (byte >> (7 - self.position % 8)) & 1;
            value = (value << 1) | u64::from(bit);
            self.position += 1;
        }
        Some(value)
    }

    fn flag(&mut self) -> Option<bool> {
        self.take(1).map(|bit| bit == 1)
    }
}

fn sign_extend(value: u64, bits: u8) -> i64 {
    let shift = 64 - u32::from(bits);
    ((value << shift) as i64) >> shift
}

/// An append-only compressed run of samples of one series (milliseconds, f64).
#[derive(Debug, Clone, Default)]
pub struct Encoder {
    bits: BitWriter,
    count: u32,
    first_time: i64,
    last_time: i64,
    last_delta: i64,
    last_value: u64,
    leading: u8,
    trailing: u8,
}

/// Delta-of-delta buckets: (prefix, prefix bits, value bits).
const BUCKETS: [(u64, u8, u8); 4] = [
    (0b10, 2, 7),
    (0b110, 3, 9),
    (0b1110, 4, 12),
    (0b11110, 5, 32),
];

impl Encoder {
    pub fn new() -> Encoder {
        Encoder::default()
    }

    pub fn len(&self) -> u32 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn first_time(&self) -> i64 {
        self.first_time
    }

    pub fn last_time(&self) -> i64 {
        self.last_time
    }

    /// The encoded bytes so far.
    pub fn bytes(&self) -> &[u8] {
        &self.bits.bytes
    }

    /// Appends a sample; `time` must not be before the last one's.
    pub fn push(&mut self, time: i64, value: f64) {
        let value = value.to_bits();
        if self.count == 0 {
            self.bits.push(time as u64, 64);
            self.bits.push(value, 64);
            self.first_time = time;
        } else {
            let delta = time - self.last_time;
            self.push_time(delta - self.last_delta);
            self.last_delta = delta;
            self.push_value(value);
        }
        self.last_time = time;
        self.last_value = value;
        self.count += 1;
    }

    fn push_time(&mut self, dod: i64) {
        if dod == 0 {
            self.bits.push(0, 1);
            return;
        }
        for (prefix, prefix_bits, bits) in BUCKETS {
            let half = 1i64 << (bits - 1);
            if (-half..half).contains(&dod) {
                self.bits.push(prefix, prefix_bits);
                self.bits.push(dod as u64 & ((1u64 << bits) - 1), bits);
                return;
            }
        }
        self.bits.push(0b11111, 5);
        self.bits.push(dod as u64, 64);
    }

    fn push_value(&mut self, value: u64) {
        let xor = value ^ self.last_value;
        if xor == 0 {
            self.bits.push(0, 1);
            return;
        }
        let leading = (xor.leading_zeros() as u8).min(31);
        let trailing = xor.trailing_zeros() as u8;
        if self.count > 1
            && leading >= self.leading
            && trailing >= self.trailing
            && self.leading + self.trailing > 0
        {
            self.bits.push(0b10, 2);
            let meaningful = 64 - self.leading - self.trailing;
            self.bits.push(xor >> self.trailing, meaningful);
        } else {
            self.leading = leading;
            self.trailing = trailing;
            let meaningful = 64 - leading - trailing;
            self.bits.push(0b11, 2);
            self.bits.push(u64::from(leading), 5);
            // 64 meaningful bits are written as 0 (it cannot be 0 otherwise).
            self.bits.push(u64::from(meaningful % 64), 6);
            self.bits.push(xor >> trailing, meaningful);
        }
    }
}

/// Reads `count` samples back from encoded bytes; `None` if they are cut short.
pub fn decode(bytes: &[u8], count: u32) -> Option<Vec<(i64, f64)>> {
    let mut reader = BitReader { bytes, position: 0 };
    let mut samples = Vec::with_capacity(count as usize);
    if count == 0 {
        return Some(samples);
    }
    let mut time = reader.take(64)? as i64;
    let mut value = reader.take(64)?;
    samples.push((time, f64::from_bits(value)));
    let (mut delta, mut leading, mut trailing) = (0i64, 0u8, 0u8);
    for _ in 1..count {
        let dod = if !reader.flag()? {
            0
        } else {
            let mut found = None;
            for (_, _, bits) in BUCKETS {
                if !reader.flag()? {
                    found = Some(sign_extend(reader.take(bits)?, bits));
                    break;
                }
            }
            match found {
                Some(dod) => dod,
                None => reader.take(64)? as i64,
            }
        };
        delta += dod;
        time += delta;
        if reader.flag()? {
            if reader.flag()? {
                leading = reader.take(5)? as u8;
                let meaningful = match reader.take(6)? as u8 {
                    0 => 64,
                    bits => bits,
                };
                trailing = 64 - leading - meaningful;
            }
            let meaningful = 64 - leading - trailing;
            value ^= reader.take(meaningful)? << trailing;
        }
        samples.push((time, f64::from_bits(value)));
    }
    Some(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(samples: &[(i64, f64)]) -> usize {
        let mut encoder = Encoder::new();
        for &(time, value) in samples {
            encoder.push(time, value);
        }
        let decoded = decode(encoder.bytes(), encoder.len()).unwrap();
        assert_eq!(decoded.len(), samples.len());
        for (a, b) in decoded.iter().zip(samples) {
            assert_eq!(a.0, b.0);
            assert_eq!(a.1.to_bits(), b.1.to_bits(), "{} vs {}", a.1, b.1);
        }
        encoder.bytes().len()
    }

    #[test]
    fn every_kind_of_sample_round_trips() {
        let mut samples = vec![
            (1_700_000_000_000, 1.0),
            (1_700_000_001_000, 1.0),
            (1_700_000_002_000, 2.5),
        ];
        let mut time = 1_700_000_002_000;
        let mut seed = 3u64;
        for i in 0..2000 {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            // Jitter of every size, now and then a long gap or a step back to the same time.
            time += match i % 97 {
                0 => 86_400_000 * 40,
                1 => 0,
                _ => 1000 + (seed >> 60) as i64 - 8 + if i % 13 == 0 { 3000 } else { 0 },
            };
            let value = match i % 7 {
                0 => f64::NAN,
                1 => -0.0,
                2 => f64::from_bits(seed),
                3 => (seed >> 40) as f64,
                _ => 1e9 + (i as f64) * 0.1,
            };
            samples.push((time, value));
        }
        round_trip(&samples);
        round_trip(&[]);
        round_trip(&[(5, f64::INFINITY)]);
        round_trip(&[(i64::MIN / 4, 0.0), (i64::MAX / 4, 1.0)]);
    }

    #[test]
    fn regular_metrics_take_few_bytes() {
        // A counter of bytes read, every second, steadily growing; and a gauge that holds.
        let mut total = 0;
        let counter: Vec<(i64, f64)> = (0..3600)
            .map(|i| {
                total += 4096 * (1 + i % 3);
                (i * 1000, total as f64)
            })
            .collect();
        let bytes = round_trip(&counter) as f64 / counter.len() as f64;
        assert!(bytes < 2.0, "{bytes} bytes a sample");
        let gauge: Vec<(i64, f64)> = (0..3600)
            .map(|i| (i * 1000, if i < 1800 { 512.0 } else { 768.0 }))
            .collect();
        let bytes = round_trip(&gauge) as f64 / gauge.len() as f64;
        assert!(bytes < 0.3, "{bytes} bytes a sample");
    }

    #[test]
    fn cut_bytes_are_refused() {
        let mut encoder = Encoder::new();
        for i in 0..100 {
            encoder.push(i * 1000, i as f64 * 1.5);
        }
        let bytes = encoder.bytes();
        assert!(decode(&bytes[..bytes.len() / 2], encoder.len()).is_none());
    }
}
