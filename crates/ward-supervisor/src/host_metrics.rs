//! The host's own series, sampled with the instances': CPU, memory, load, the data
//! directory's disk, disk and network throughput, and PSI pressure where the kernel has it.
//! Counters become rates between two samplings; each series is one `ward_host_*` name with
//! no project label (only principals of every project read them).

use std::path::PathBuf;
use std::time::Instant;

/// Reads `/proc` and the data directory's filesystem, keeping the last counters.
#[derive(Debug)]
pub(crate) struct HostSampler {
    data_dir: PathBuf,
    previous: Option<(Instant, Counters)>,
}

/// Cumulative counters, for rates.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    cpu_busy: u64,
    cpu_total: u64,
    disk_read_sectors: u64,
    disk_write_sectors: u64,
    network_received: u64,
    network_sent: u64,
}

impl HostSampler {
    pub fn new(data_dir: PathBuf) -> HostSampler {
        HostSampler {
            data_dir,
            previous: None,
        }
    }

    /// This sampling's host series as (name, value).
    pub fn sample(&mut self) -> Vec<(&'static str, f64)> {
        let mut series = Vec::new();
        let now = Instant::now();
        let counters = read_counters();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        if let Some((then, before)) = self.previous {
            let elapsed = now.duration_since(then).as_secs_f64();
            if elapsed > 0.0 {
                let total = counters.cpu_total.saturating_sub(before.cpu_total);
                if total > 0 {
                    let busy = counters.cpu_busy.saturating_sub(before.cpu_busy);
                    series.push((
                        "ward_host_cpu_usage_cores",
                        busy as f64 / total as f64 * cpus,
                    ));
                }
                let rate = |now: u64, before: u64| now.saturating_sub(before) as f64 / elapsed;
                series.push((
                    "ward_host_disk_read_bytes_per_second",
                    rate(counters.disk_read_sectors, before.disk_read_sectors) * 512.0,
                ));
                series.push((
                    "ward_host_disk_write_bytes_per_second",
                    rate(counters.disk_write_sectors, before.disk_write_sectors) * 512.0,
                ));
                series.push((
                    "ward_host_network_receive_bytes_per_second",
                    rate(counters.network_received, before.network_received),
                ));
                series.push((
                    "ward_host_network_transmit_bytes_per_second",
                    rate(counters.network_sent, before.network_sent),
                ));
            }
        }
        self.previous = Some((now, counters));
        if let Ok(meminfo) = std::fs::read_to_string("/proc/meminfo") {
            let field = |name: &str| {
                meminfo.lines().find_map(|line| {
                    let rest = line.strip_prefix(name)?.strip_prefix(':')?;
                    rest.split_whitespace().next()?.parse::<f64>().ok()
                })
            };
            if let (Some(total), Some(available)) = (field("MemTotal"), field("MemAvailable")) {
                series.push(("ward_host_memory_total_bytes", total * 1024.0));
                series.push(("ward_host_memory_available_bytes", available * 1024.0));
            }
        }
        if let Some(load) = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|text| text.split_whitespace().next()?.parse::<f64>().ok())
        {
            series.push(("ward_host_load1", load));
        }
        if let Ok(stat) = nix::sys::statvfs::statvfs(&self.data_dir) {
            let block = stat.fragment_size() as f64;
            let capacity = stat.blocks() as f64 * block;
            let free = stat.blocks_available() as f64 * block;
            series.push(("ward_host_disk_capacity_bytes", capacity));
            series.push(("ward_host_disk_used_bytes", (capacity - free).max(0.0)));
        }
        for (resource, name) in [
            ("cpu", "ward_host_pressure_cpu_some_ratio"),
            ("memory", "ward_host_pressure_memory_some_ratio"),
            ("io", "ward_host_pressure_io_some_ratio"),
        ] {
            // `some avg10=0.12 avg60=… total=…`: the share of the last 10 s something waited.
            let avg10 = std::fs::read_to_string(format!("/proc/pressure/{resource}"))
                .ok()
                .and_then(|text| {
                    let line = text.lines().find(|line| line.starts_with("some"))?;
                    line.split_whitespace()
                        .find_map(|field| field.strip_prefix("avg10="))?
                        .parse::<f64>()
                        .ok()
                });
            if let Some(avg10) = avg10 {
                series.push((name, avg10 / 100.0));
            }
        }
        series
    }
}

fn read_counters() -> Counters {
    let mut counters = Counters::default();
    if let Ok(stat) = std::fs::read_to_string("/proc/stat") {
        if let Some(line) = stat.lines().find(|line| line.starts_with("cpu ")) {
            // user nice system idle iowait irq softirq steal (guest time is inside user).
            let fields: Vec<u64> = line
                .split_whitespace()
                .skip(1)
                .take(8)
                .map(|field| field.parse().unwrap_or(0))
                .collect();
            let total: u64 = fields.iter().sum();
            let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
            counters.cpu_total = total;
            counters.cpu_busy = total.saturating_sub(idle);
        }
    }
    if let Ok(diskstats) = std::fs::read_to_string("/proc/diskstats") {
        for line in diskstats.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 10 || !whole_disk(fields[2]) {
                continue;
            }
            counters.disk_read_sectors += fields[5].parse::<u64>().unwrap_or(0);
            counters.disk_write_sectors += fields[9].parse::<u64>().unwrap_or(0);
        }
    }
    if let Ok(table) = std::fs::read_to_string("/proc/net/dev") {
        for line in table.lines().skip(2) {
            let Some((interface, numbers)) = line.split_once(':') else {
                continue;
            };
            let interface = interface.trim();
            // The host's own interfaces: not loopback, not the veths of workloads.
            if interface == "lo"
                || ["veth", "wv", "ward"]
                    .iter()
                    .any(|prefix| interface.starts_with(prefix))
            {
                continue;
            }
            let numbers: Vec<u64> = numbers
                .split_whitespace()
                .map(|field| field.parse().unwrap_or(0))
                .collect();
            if numbers.len() >= 9 {
                counters.network_received += numbers[0];
                counters.network_sent += numbers[8];
            }
        }
    }
    counters
}

/// A whole disk (`sda`, `vda`, `nvme0n1`), not a partition, loop or RAM device.
fn whole_disk(name: &str) -> bool {
    if name.starts_with("loop") || name.starts_with("ram") || name.starts_with("dm-") {
        return false;
    }
    if name.starts_with("nvme") || name.starts_with("mmcblk") {
        return !name.contains('p');
    }
    !name.ends_with(|c: char| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_disks_are_told_from_partitions() {
        for disk in ["sda", "vda", "nvme0n1", "xvdb", "mmcblk0"] {
            assert!(whole_disk(disk), "{disk}");
        }
        for part in [
            "sda1",
            "vda15",
            "nvme0n1p2",
            "loop3",
            "ram0",
            "dm-0",
            "mmcblk0p1",
        ] {
            assert!(!whole_disk(part), "{part}");
        }
    }

    #[test]
    fn a_host_sampling_has_cpu_memory_disk_and_load() {
        let mut sampler = HostSampler::new(std::env::temp_dir());
        let first = sampler.sample();
        let names: Vec<&str> = first.iter().map(|(name, _)| *name).collect();
        for name in [
            "ward_host_memory_total_bytes",
            "ward_host_memory_available_bytes",
            "ward_host_load1",
            "ward_host_disk_capacity_bytes",
            "ward_host_disk_used_bytes",
        ] {
            assert!(names.contains(&name), "{name} missing from {names:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        let second = sampler.sample();
        let cpu = second
            .iter()
            .find(|(name, _)| *name == "ward_host_cpu_usage_cores")
            .expect("CPU from the second sampling on");
        assert!(cpu.1 >= 0.0);
    }
}
