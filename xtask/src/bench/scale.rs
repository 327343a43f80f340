//! Scale: the capturer's RSS and open fds with many idle containers monitored.
//!
//! Idle containers (`loggen --lines 1 --hold-secs -1`: one line, then alive and silent) are
//! created in parallel batches up to each count (100, then 500; 20 and 100 with `--quick`), with
//! the capturer already running so it picks each up as it starts. At each count the figures are
//! read once /health lists that many running container tasks and a few seconds have passed: the
//! highest RSS of five samples a second apart, and the open fds then.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::json;

use super::{Bench, LABEL_KEY, SectionResult, Target};
use crate::{
    harness::{capturer::Capturer, containers::ContainerSet, procfs},
    report::{Table, mib},
};

/// The RSS target at the largest count.
const RSS_TARGET_MIB: f64 = 27.0;
/// How long the capturer may take to list every container as running.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(300);
/// Samples taken at each count, a second apart, once every task runs.
const SAMPLES: usize = 5;

pub(crate) fn run(bench: &Bench) -> Result<SectionResult> {
    let counts: &[usize] = if bench.quick { &[20, 100] } else { &[100, 500] };
    let set = ContainerSet::new(LABEL_KEY, format!("{}-scale", bench.run_id));
    let config = bench.capturer_config("scale", set.label(), false)?;
    let capturer = Capturer::spawn(&config)?;
    let pid = capturer.pid();
    // Let the capturer finish starting before the baseline.
    std::thread::sleep(Duration::from_secs(2));
    let mut rows = vec![(0, procfs::rss_bytes(pid)?, procfs::open_fds(pid)?, 0.0)];
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
        let fds = procfs::open_fds(pid)?;
        eprintln!(
            "scale: {count} containers: RSS {} fds {fds}",
            mib(rss as f64)
        );
        rows.push((count, rss, fds, discovery));
    }
    capturer.stop(Duration::from_secs(60))?;
    eprintln!("scale: removing {created} containers");
    drop(set);

    let mut table = Table::new(&["containers", "RSS", "open fds", "all running after"]);
    for (count, rss, fds, discovery) in &rows {
        table.row(vec![
            count.to_string(),
            mib(*rss as f64),
            fds.to_string(),
            format!("{discovery:.1}s"),
        ]);
    }
    let (largest, rss, _, _) = rows.last().copied().unwrap_or_default();
    let rss_mib = rss as f64 / (1024.0 * 1024.0);
    Ok(SectionResult {
        figures: json!({
            "method": "idle loggen containers (--lines 1 --hold-secs -1); max RSS of 5 samples 1 s apart once /health lists all as running",
            "points": rows.iter().map(|(count, rss, fds, discovery)| json!({
                "containers": count, "rss_bytes": rss, "open_fds": fds,
                "seconds_until_all_running": discovery,
            })).collect::<Vec<_>>(),
        }),
        targets: vec![Target {
            figure: format!("RSS at {largest} idle containers"),
            measured: format!("{rss_mib:.1} MiB"),
            target: format!("<= {RSS_TARGET_MIB} MiB (at 500)"),
            met: rss_mib <= RSS_TARGET_MIB,
        }],
        table: Some(table),
    })
}
