//! Process and runtime gauges, refreshed on each `/metrics` scrape.
//!
//! Each refresh costs one directory listing (`/proc/self/fd`), one small file read
//! (`/proc/self/status`) and an atomic load per registered runtime: cheap enough for a scrape
//! every few seconds, and nothing runs between scrapes.

use std::fs;

use tokio::runtime::Handle;

/// Gauge: open file descriptors of this process.
pub(crate) const PROCESS_OPEN_FDS: &str = "process_open_fds";
/// Gauge: resident set size of this process, in bytes.
pub(crate) const PROCESS_RESIDENT_MEMORY_BYTES: &str = "process_resident_memory_bytes";
/// Gauge: alive tasks summed over every registered tokio runtime.
pub(crate) const TOKIO_ALIVE_TASKS: &str = "tokio_alive_tasks";

/// Sets the process and runtime gauges through the `metrics` facade, so they appear in the
/// recorder's next render.
///
/// A value that cannot be read (no `/proc`, as on macOS) leaves its gauge unset rather than
/// reporting a false zero.
pub(crate) fn refresh(runtimes: &[Handle]) {
    if let Some(fds) = open_fds() {
        metrics::gauge!(PROCESS_OPEN_FDS).set(fds as f64);
    }
    if let Some(rss) = resident_memory_bytes() {
        metrics::gauge!(PROCESS_RESIDENT_MEMORY_BYTES).set(rss as f64);
    }
    let alive: usize = runtimes
        .iter()
        .map(|runtime| runtime.metrics().num_alive_tasks())
        .sum();
    metrics::gauge!(TOKIO_ALIVE_TASKS).set(alive as f64);
}

/// Counts the entries of `/proc/self/fd`.
fn open_fds() -> Option<usize> {
    let entries = fs::read_dir("/proc/self/fd").ok()?;
    // The listing includes the descriptor `read_dir` itself holds open; it is not the process's.
    Some(entries.count().saturating_sub(1))
}

/// Reads `VmRSS` (in kB) from `/proc/self/status`.
///
/// `VmRSS` is used rather than `/proc/self/statm` because statm counts pages, and the page size is
/// not 4096 on every platform (arm64 kernels may use 16 or 64 KiB pages).
fn resident_memory_bytes() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_rss(&status)
}

/// Extracts `VmRSS` from the text of `/proc/<pid>/status`, in bytes.
pub(crate) fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let mut fields = line["VmRSS:".len()..].split_whitespace();
    let value: u64 = fields.next()?.parse().ok()?;
    match fields.next() {
        Some("kB") | None => value.checked_mul(1024),
        Some(_) => None,
    }
}
