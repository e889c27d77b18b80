//! What `/proc` says of a process: the CPU time it used and its peak resident memory. Shared
//! by the benches that run the agent binary.

use std::fs;
use std::process::Command;
use std::sync::OnceLock;

/// User plus system CPU time from a `/proc/.../stat` file.
pub fn cpu_seconds(stat_path: &str) -> Result<f64, String> {
    let stat =
        fs::read_to_string(stat_path).map_err(|error| format!("reading {stat_path}: {error}"))?;
    // The command name (field 2) is in parentheses and may hold spaces, so count fields from
    // after its closing parenthesis: that is field 3, making utime and stime (14 and 15) the
    // 12th and 13th.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| format!("{stat_path}: no command name in {stat:?}"))?;
    let mut fields = after_name.split_whitespace().skip(11);
    let mut ticks = || -> Result<u64, String> {
        fields
            .next()
            .and_then(|field| field.parse().ok())
            .ok_or_else(|| format!("{stat_path}: no utime/stime in {stat:?}"))
    };
    let total = ticks()? + ticks()?;
    Ok(total as f64 / clock_ticks_per_second() as f64)
}

fn clock_ticks_per_second() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|output| String::from_utf8(output.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .filter(|&ticks| ticks > 0)
            .unwrap_or(100)
    })
}

pub fn peak_rss_bytes(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    let status = fs::read_to_string(&path).map_err(|error| format!("reading {path}: {error}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .ok_or_else(|| format!("{path}: no VmHWM line"))
}
