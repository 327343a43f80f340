//! Other processes: their resource figures, read from `/proc` (Linux only), and signals.

use std::path::Path;

use anyhow::{Context, Result, bail};

/// Clock ticks per second of the `utime`/`stime` fields (`getconf CLK_TCK`, 100 on Linux).
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// Resident set size in bytes (`VmRSS` of `/proc/PID/status`).
pub fn rss_bytes(pid: u32) -> Result<u64> {
    status_kib(pid, "VmRSS").map(|kib| kib * 1024)
}

/// Peak resident set size in bytes (`VmHWM` of `/proc/PID/status`).
pub fn peak_rss_bytes(pid: u32) -> Result<u64> {
    status_kib(pid, "VmHWM").map(|kib| kib * 1024)
}

/// A `kB` field of `/proc/PID/status`.
fn status_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// Sends `signal` (`KILL`, `TERM`, `HUP`, ...) to a process; std has no signal API, and `kill`
/// is everywhere the harness runs.
pub fn signal(pid: u32, signal: &str) -> Result<()> {
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .context("run kill")?;
    if !status.success() {
        bail!("kill -{signal} {pid} failed: {status}");
    }
    Ok(())
}

/// Whether this process runs as root (the owner of `/proc/self` is the effective user).
pub fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

/// Open file descriptors (entries of `/proc/PID/fd`).
pub fn open_fds(pid: u32) -> Result<u64> {
    let entries = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .with_context(|| format!("list fds of {pid}"))?;
    Ok(entries.count() as u64)
}

/// User plus system CPU seconds the process has used (fields 14 and 15 of `/proc/PID/stat`).
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("read /proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces and parentheses; fields after it are plain.
    let after_name = stat
        .rfind(')')
        .map(|end| &stat[end + 1..])
        .with_context(|| format!("bad /proc/{pid}/stat"))?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // `fields[0]` is field 3 (state), so field N is `fields[N - 3]`.
    let ticks = |field: usize| -> Result<f64> {
        fields
            .get(field - 3)
            .and_then(|value| value.parse::<f64>().ok())
            .with_context(|| format!("no field {field} in /proc/{pid}/stat"))
    };
    Ok((ticks(14)? + ticks(15)?) / CLOCK_TICKS_PER_SECOND)
}

/// Whether the process exists and has not exited (a zombie, state `Z`, has).
pub fn is_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rfind(')')
            .and_then(|end| stat[end + 1..].split_whitespace().next())
            .is_some_and(|state| !matches!(state, "Z" | "X"))
    })
}

/// The PID of the one process whose command name is `name` (what `pidof` does).
pub fn pid_of(name: &str) -> Result<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        let Some(pid) = entry.file_name().to_str().and_then(|pid| pid.parse().ok()) else {
            continue;
        };
        let comm = Path::new("/proc").join(entry.file_name()).join("comm");
        if std::fs::read_to_string(comm).is_ok_and(|comm| comm.trim_end() == name) {
            found.push(pid);
        }
    }
    match found.as_slice() {
        [pid] => Ok(*pid),
        [] => bail!("no process named {name}"),
        many => bail!("several processes named {name}: {many:?}"),
    }
}

/// The PID of the Docker daemon the CLI talks to: the `dockerd` whose command line names the
/// socket of a `unix://` `$DOCKER_HOST`, else the one of `/var/run/docker.pid`, else the only
/// `dockerd` (several may run: private test daemons).
pub fn daemon_pid() -> Result<u32> {
    let socket = std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|host| host.strip_prefix("unix://").map(str::to_owned))
        .filter(|path| path != "/var/run/docker.sock");
    if let Some(socket) = socket {
        for entry in std::fs::read_dir("/proc")?.filter_map(Result::ok) {
            let Some(pid) = entry.file_name().to_str().and_then(|pid| pid.parse().ok()) else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            if cmdline.starts_with("dockerd\0") && cmdline.contains(socket.as_str()) {
                return Ok(pid);
            }
        }
        bail!("no dockerd serves {socket}");
    }
    match default_daemon_pid() {
        Some(pid) => Ok(pid),
        None => pid_of("dockerd"),
    }
}

/// The default daemon's PID, from `/var/run/docker.pid`, if it runs.
pub fn default_daemon_pid() -> Option<u32> {
    let pid = std::fs::read_to_string("/var/run/docker.pid")
        .ok()?
        .trim()
        .parse()
        .ok()?;
    is_alive(pid).then_some(pid)
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_has_figures() {
        let pid = std::process::id();
        assert!(super::rss_bytes(pid).unwrap() > 0);
        assert!(super::peak_rss_bytes(pid).unwrap() >= super::rss_bytes(pid).unwrap() / 2);
        assert!(super::open_fds(pid).unwrap() >= 3);
        assert!(super::cpu_seconds(pid).unwrap() >= 0.0);
        assert!(super::is_alive(pid));
        assert!(!super::is_alive(u32::MAX));
    }
}
