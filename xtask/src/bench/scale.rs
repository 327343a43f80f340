//! Scale: the capturer's RSS, open fds and idle CPU with many idle containers monitored.
//!
//! Idle containers (`loggen --lines 1 --hold-secs -1`: one line, then alive and silent) are
//! created in parallel batches up to each count (100, then 500; 20 and 100 with `--quick`), with
//! the capturer already running so it picks each up as it starts. At each count the figures are
//! read once /health lists that many running container tasks and a few seconds have passed: the
//! highest RSS of five samples a second apart, then the capturer's CPU over the next 20 s (in
//! file mode, the default as root, nothing polls: it should be near zero; the first seconds
//! after the tasks start are left out, they read each container's first line), and the open
//! fds then. The tasks' read modes (from /health) are reported beside them.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::json;

use super::{Bench, LABEL_KEY, SectionResult, Target};
use test_support::report::{Table, mib};
use test_support::{
    capturer::{Capturer, each_container_task},
    docker::ContainerSet,
    procfs,
};

/// The RSS target at the largest count.
const RSS_TARGET_MIB: f64 = 27.0;
/// The RSS target at the largest count when every task reads files (#15).
const FILES_RSS_TARGET_MIB: f64 = 20.0;
/// How long the capturer may take to list every container as running.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(300);
/// Samples taken at each count, a second apart, once every task runs.
const SAMPLES: usize = 5;
/// The capturer's CPU with the largest count of idle containers, at most (% of a core).
const IDLE_CPU_TARGET_PERCENT: f64 = 0.5;
/// How long the idle CPU is measured, after the RSS samples (the new tasks have settled).
const IDLE_WINDOW: Duration = Duration::from_secs(20);

/// The figures at one count of idle containers.
#[derive(Debug, Clone, Copy, Default)]
struct Point {
    containers: usize,
    rss: u64,
    fds: u64,
    /// Seconds until /health listed every task running.
    discovery: f64,
    /// The capturer's CPU while they idle, in % of a core.
    cpu_percent: f64,
    /// Tasks reading files.
    in_files: usize,
}

pub(crate) fn run(bench: &Bench) -> Result<SectionResult> {
    let counts: &[usize] = if bench.quick { &[20, 100] } else { &[100, 500] };
    let set = ContainerSet::new(LABEL_KEY, format!("{}-scale", bench.run_id));
    let config = bench.capturer_config("scale", set.label(), false)?;
    let capturer = Capturer::spawn(&config)?;
    let pid = capturer.pid();
    // Let the capturer finish starting before the baseline.
    std::thread::sleep(Duration::from_secs(2));
    let mut rows = vec![Point {
        rss: procfs::rss_bytes(pid)?,
        fds: procfs::open_fds(pid)?,
        ..Point::default()
    }];
    let mut created = 0;
    for &count in counts {
        let started = Instant::now();
        let specs: Vec<Vec<String>> = (created..count)
            .map(|index| {
                vec![
                    "--name".to_owned(),
                    format!("lcbench-{}-idle-{index}", bench.run_id),
                    bench.image.to_owned(),
                    "--tag".to_owned(),
                    format!("idle-{index}"),
                    "--lines".to_owned(),
                    "1".to_owned(),
                    "--hold-secs".to_owned(),
                    "-1".to_owned(),
                ]
            })
            .collect();
        eprintln!("scale: starting {} containers", specs.len());
        set.run_many(&specs)?;
        created = count;
        eprintln!(
            "scale: {count} containers running after {:.0}s; waiting for the capturer",
            started.elapsed().as_secs_f64()
        );
        let waiting = Instant::now();
        loop {
            let running = capturer.container_tasks_in("running")?;
            if running >= count {
                break;
            }
            if waiting.elapsed() > DISCOVERY_TIMEOUT {
                bail!(
                    "only {running} of {count} container tasks running after {DISCOVERY_TIMEOUT:?}"
                );
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        let discovery = waiting.elapsed().as_secs_f64();
        let mut rss = 0;
        for _ in 0..SAMPLES {
            std::thread::sleep(Duration::from_secs(1));
            rss = rss.max(procfs::rss_bytes(pid)?);
        }
        let (cpu_before, wall_before) = (procfs::cpu_seconds(pid)?, Instant::now());
        std::thread::sleep(IDLE_WINDOW);
        let cpu_percent =
            100.0 * (procfs::cpu_seconds(pid)? - cpu_before) / wall_before.elapsed().as_secs_f64();
        let fds = procfs::open_fds(pid)?;
        let (_, health) = capturer.health_status()?;
        let in_files = each_container_task(&health)
            .filter(|task| task["mode"] == "files")
            .count();
        eprintln!(
            "scale: {count} containers ({in_files} read from files): RSS {} fds {fds} CPU {cpu_percent:.2} % of a core",
            mib(rss as f64)
        );
        rows.push(Point {
            containers: count,
            rss,
            fds,
            discovery,
            cpu_percent,
            in_files,
        });
    }
    capturer.stop(Duration::from_secs(60))?;
    eprintln!("scale: removing {created} containers");
    drop(set);

    let mut table = Table::new(&[
        "containers",
        "read from files",
        "RSS",
        "open fds",
        "idle CPU",
        "all running after",
    ]);
    for point in &rows {
        table.row(vec![
            point.containers.to_string(),
            point.in_files.to_string(),
            mib(point.rss as f64),
            point.fds.to_string(),
            format!("{:.2} %", point.cpu_percent),
            format!("{:.1}s", point.discovery),
        ]);
    }
    let largest = rows.last().copied().unwrap_or_default();
    let rss_mib = largest.rss as f64 / (1024.0 * 1024.0);
    Ok(SectionResult {
        figures: json!({
            "method": "idle loggen containers (--lines 1 --hold-secs -1); max RSS of 5 samples 1 s apart once /health lists all as running, then the capturer's CPU over the next 20 s",
            "points": rows.iter().map(|point| json!({
                "containers": point.containers, "read_from_files": point.in_files,
                "rss_bytes": point.rss, "open_fds": point.fds,
                "idle_cpu_percent_of_a_core": point.cpu_percent,
                "seconds_until_all_running": point.discovery,
            })).collect::<Vec<_>>(),
        }),
        targets: vec![
            Target {
                figure: format!("RSS at {} idle containers", largest.containers),
                measured: format!("{rss_mib:.1} MiB"),
                target: format!("<= {RSS_TARGET_MIB} MiB (at 500)"),
                met: rss_mib <= RSS_TARGET_MIB,
            },
            Target {
                figure: format!(
                    "RSS at {} idle containers in file mode ({} read from files)",
                    largest.containers, largest.in_files
                ),
                measured: format!("{rss_mib:.1} MiB"),
                target: format!("<= {FILES_RSS_TARGET_MIB} MiB (at 500, all in file mode)"),
                met: largest.in_files == largest.containers && rss_mib <= FILES_RSS_TARGET_MIB,
            },
            Target {
                figure: format!(
                    "idle CPU at {} idle containers ({} read from files)",
                    largest.containers, largest.in_files
                ),
                measured: format!("{:.2} % of a core", largest.cpu_percent),
                target: format!("<= {IDLE_CPU_TARGET_PERCENT} % (at 500, file mode)"),
                met: largest.cpu_percent <= IDLE_CPU_TARGET_PERCENT,
            },
        ],
        table: Some(table),
    })
}
