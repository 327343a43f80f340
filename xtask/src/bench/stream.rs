//! Throughput and CPU cost: the capturer against a raw reader of the same Docker stream.
//!
//! Method. A followed log stream (`follow=1`) never ends while its container runs, and the
//! capturer only reads containers that run (one that exited before it started is history, not
//! work). So each generator writes its lines as fast as it can (`loggen --lines N --size 100`)
//! and then stays alive, silent (`--hold-secs -1`); once Docker holds every line (the last line,
//! `docker logs --tail 1`, carries the last sequence number), both readers read the same logs:
//! 1. the raw reader: one connection per container to the Docker socket,
//!    `GET /containers/{id}/logs?follow=1&stdout=1&stderr=1&timestamps=1` (HTTP/1.0, so the body
//!    is not chunked), reading 256 KiB at a time and discarding the bytes except for counting the
//!    frames (8-byte headers); timed from connect until every container's stream has delivered
//!    all its lines, then the connections are dropped;
//! 2. the capturer, started on a fresh data dir with `LOG_CAPTURER_DOCKER_READ_FROM=beginning` and
//!    only these containers in view; timed from spawn (process start and Docker discovery
//!    included) until the file sink holds every line (the file is read as it grows, every 10 ms).
//!    The time from the first record to the last is reported too.
//!
//! The raw reader is the daemon's limit: no consumer can get the lines faster than Docker serves
//! them. CPU: user+sys seconds (`/proc/PID/stat`) of the capturer over its whole run, against
//! dockerd's over the same window (dockerd's PID by name), and per line.

use std::{
    io::{Read, Write},
    os::unix::net::UnixStream,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::{Bench, LABEL_KEY, SectionResult, Target};
use test_support::report::Table;
use test_support::{
    capturer::{Capturer, CapturerConfig},
    docker::{self, ContainerSet},
    parallel::parallel_map,
    procfs,
    tail::FileTail,
    wait,
};

/// Each generated line's size, newline excluded.
const LINE_SIZE: usize = 100;
/// How often the capturer's output file is read while waiting for the last line.
const POLL: Duration = Duration::from_millis(10);
/// The throughput target: the capturer's rate at least this fraction of the raw reader's.
const THROUGHPUT_TARGET: f64 = 0.95;
/// The CPU target: the capturer's CPU at most this fraction of dockerd's for the same stream.
const CPU_TARGET: f64 = 0.15;
/// Read buffer of the raw reader.
const RAW_READ_BUFFER: usize = 256 * 1024;

/// One scenario's figures.
#[derive(Debug, Clone)]
pub(crate) struct StreamRun {
    containers: usize,
    lines_each: u64,
    raw_seconds: f64,
    raw_bytes: u64,
    raw_dockerd_cpu: f64,
    capturer_seconds: f64,
    capturer_first_to_last_seconds: f64,
    capturer_cpu: f64,
    capturer_dockerd_cpu: f64,
}

impl StreamRun {
    fn lines(&self) -> u64 {
        self.containers as u64 * self.lines_each
    }

    fn ratio(&self) -> f64 {
        self.raw_seconds / self.capturer_seconds
    }

    fn to_json(&self) -> Value {
        let lines = self.lines() as f64;
        json!({
            "containers": self.containers,
            "lines_each": self.lines_each,
            "line_size": LINE_SIZE,
            "raw_reader": {
                "seconds": self.raw_seconds,
                "lines_per_second": lines / self.raw_seconds,
                "bytes": self.raw_bytes,
                "dockerd_cpu_seconds": self.raw_dockerd_cpu,
            },
            "capturer": {
                "seconds_from_spawn": self.capturer_seconds,
                "seconds_first_to_last_record": self.capturer_first_to_last_seconds,
                "lines_per_second": lines / self.capturer_seconds,
                "cpu_seconds": self.capturer_cpu,
                "dockerd_cpu_seconds": self.capturer_dockerd_cpu,
                "cpu_us_per_line": self.capturer_cpu / lines * 1e6,
            },
            "throughput_ratio": self.ratio(),
            "cpu_ratio_to_dockerd": self.capturer_cpu / self.capturer_dockerd_cpu,
        })
    }
}

fn scenarios(quick: bool) -> [(usize, u64); 3] {
    if quick {
        [(1, 100_000), (10, 10_000), (50, 2_000)]
    } else {
        [(1, 1_000_000), (10, 100_000), (50, 20_000)]
    }
}

/// The `throughput` section; also returns the single-container run for the `cpu` section.
pub(crate) fn throughput(bench: &Bench) -> Result<(SectionResult, Option<StreamRun>)> {
    let mut runs = Vec::new();
    for (containers, lines) in scenarios(bench.quick) {
        runs.push(measure(bench, containers, lines)?);
    }
    let mut table = Table::new(&[
        "containers x lines",
        "raw reader",
        "capturer",
        "capturer (1st to last record)",
        "ratio",
    ]);
    let mut targets = Vec::new();
    for run in &runs {
        let lines = run.lines() as f64;
        let label = format!("{} x {}", run.containers, run.lines_each);
        table.row(vec![
            label.clone(),
            format!(
                "{:.2}s ({:.0} lines/s)",
                run.raw_seconds,
                lines / run.raw_seconds
            ),
            format!(
                "{:.2}s ({:.0} lines/s)",
                run.capturer_seconds,
                lines / run.capturer_seconds
            ),
            format!("{:.2}s", run.capturer_first_to_last_seconds),
            format!("{:.2}", run.ratio()),
        ]);
        targets.push(Target {
            figure: format!("throughput {label} vs raw reader"),
            measured: format!("{:.2}x", run.ratio()),
            target: format!(">= {THROUGHPUT_TARGET}x"),
            met: run.ratio() >= THROUGHPUT_TARGET,
        });
    }
    let result = SectionResult {
        figures: json!({
            "method": "generators finish first; raw reader (HTTP/1.0 follow=1 on the Docker socket) \
                       then capturer (read_from=beginning) over the same logs; capturer timed from \
                       spawn until the file sink holds every line",
            "runs": runs.iter().map(StreamRun::to_json).collect::<Vec<_>>(),
        }),
        targets,
        table: Some(table),
    };
    Ok((result, runs.into_iter().next()))
}

/// The `cpu` section, from the single-container throughput run (measured now if not given).
pub(crate) fn cpu(bench: &Bench, single: Option<StreamRun>) -> Result<SectionResult> {
    let run = match single {
        Some(run) => run,
        None => {
            let (containers, lines) = scenarios(bench.quick)[0];
            measure(bench, containers, lines)?
        }
    };
    let lines = run.lines() as f64;
    let ratio = run.capturer_cpu / run.capturer_dockerd_cpu;
    let per_line = run.capturer_cpu / lines * 1e6;
    let mut table = Table::new(&["process", "CPU seconds", "us per line"]);
    table.row(vec![
        "log-capturer".to_owned(),
        format!("{:.2}", run.capturer_cpu),
        format!("{per_line:.2}"),
    ]);
    table.row(vec![
        "dockerd (serving the capturer)".to_owned(),
        format!("{:.2}", run.capturer_dockerd_cpu),
        format!("{:.2}", run.capturer_dockerd_cpu / lines * 1e6),
    ]);
    table.row(vec![
        "dockerd (serving the raw reader)".to_owned(),
        format!("{:.2}", run.raw_dockerd_cpu),
        format!("{:.2}", run.raw_dockerd_cpu / lines * 1e6),
    ]);
    Ok(SectionResult {
        figures: json!({
            "lines": run.lines(),
            "capturer_cpu_seconds": run.capturer_cpu,
            "dockerd_cpu_seconds": run.capturer_dockerd_cpu,
            "dockerd_cpu_seconds_raw_reader": run.raw_dockerd_cpu,
            "ratio": ratio,
            "capturer_us_per_line": per_line,
            "clock_ticks_per_second": 100,
        }),
        targets: vec![Target {
            figure: format!("CPU vs dockerd, {} lines", run.lines()),
            measured: format!("{ratio:.3}x ({per_line:.2} us/line)"),
            target: format!("<= {CPU_TARGET}x"),
            met: ratio <= CPU_TARGET,
        }],
        table: Some(table),
    })
}

/// Runs one scenario: generators to completion, then the raw reader, then the capturer (through
/// the API, the path this section measures; `bench files` compares it with file mode).
fn measure(bench: &Bench, containers: usize, lines: u64) -> Result<StreamRun> {
    let name = format!("stream-{containers}x{lines}");
    let (set, ids) = generate(bench, &name, containers, lines)?;
    let raw = raw_phase(&name, &ids, lines)?;
    let capture = capture_phase(bench, &name, set.label(), containers as u64 * lines, "api")?;
    drop(set);
    Ok(StreamRun {
        containers,
        lines_each: lines,
        raw_seconds: raw.seconds,
        raw_bytes: raw.bytes,
        raw_dockerd_cpu: raw.dockerd_cpu,
        capturer_seconds: capture.seconds,
        capturer_first_to_last_seconds: capture.seconds - capture.first_record,
        capturer_cpu: capture.cpu,
        capturer_dockerd_cpu: capture.dockerd_cpu,
    })
}

/// Starts `containers` generators of `lines` lines each that stay alive once done, and waits
/// until Docker holds every line.
pub(super) fn generate(
    bench: &Bench,
    name: &str,
    containers: usize,
    lines: u64,
) -> Result<(ContainerSet, Vec<String>)> {
    eprintln!("{name}: generating {containers} x {lines} lines");
    let set = ContainerSet::new(LABEL_KEY, format!("{}-{name}", bench.run_id));
    let specs: Vec<Vec<String>> = (0..containers)
        .map(|index| {
            vec![
                "--name".to_owned(),
                format!("lcbench-{}-{name}-{index}", bench.run_id),
                bench.image.to_owned(),
                "--tag".to_owned(),
                format!("t{index}"),
                "--lines".to_owned(),
                lines.to_string(),
                "--size".to_owned(),
                LINE_SIZE.to_string(),
                "--hold-secs".to_owned(),
                "-1".to_owned(),
            ]
        })
        .collect();
    let ids = set.run_many(&specs)?;
    for id in &ids {
        wait_written(id, lines, Duration::from_millis(200))?;
    }
    Ok((set, ids))
}

/// The raw reader's run over the generators' logs.
#[derive(Debug, Clone, Copy)]
pub(super) struct RawPhase {
    pub(super) seconds: f64,
    pub(super) bytes: u64,
    pub(super) dockerd_cpu: f64,
}

/// Reads every container's whole log with the raw reader, timing it and dockerd's CPU.
pub(super) fn raw_phase(name: &str, ids: &[String], lines: u64) -> Result<RawPhase> {
    let dockerd = procfs::daemon_pid()?;
    let socket = docker::socket_path();
    let cpu_before = procfs::cpu_seconds(dockerd)?;
    let started = Instant::now();
    let reads = parallel_map(ids, "a raw reader", |id| raw_read(&socket, id, lines))?;
    let seconds = started.elapsed().as_secs_f64();
    let dockerd_cpu = procfs::cpu_seconds(dockerd)? - cpu_before;
    for (id, read) in ids.iter().zip(&reads) {
        if read.frames != lines {
            bail!(
                "the raw reader got {} of {lines} lines of {id}",
                read.frames
            );
        }
    }
    let bytes = reads.iter().map(|read| read.bytes).sum();
    eprintln!("{name}: raw reader {seconds:.2}s ({bytes} bytes)");
    Ok(RawPhase {
        seconds,
        bytes,
        dockerd_cpu,
    })
}

/// The capturer's run over the generators' logs.
#[derive(Debug, Clone, Copy)]
pub(super) struct CapturePhase {
    /// From spawn until the file sink holds every line.
    pub(super) seconds: f64,
    /// From spawn until the first record.
    pub(super) first_record: f64,
    pub(super) cpu: f64,
    pub(super) dockerd_cpu: f64,
    /// This process's CPU seconds meanwhile (reading the sink's files): the CPU it took from
    /// what it measures.
    pub(super) observer_cpu: f64,
}

/// Runs the capturer (`docker.read_mode = read_mode`) on a fresh data dir until its file sink
/// holds `expected` lines.
pub(super) fn capture_phase(
    bench: &Bench,
    name: &str,
    label: String,
    expected: u64,
    read_mode: &str,
) -> Result<CapturePhase> {
    let mut config = bench.capturer_config(&format!("{name}-{read_mode}"), label, true)?;
    config.extra_env.push((
        "LOG_CAPTURER_DOCKER_READ_MODE".to_owned(),
        read_mode.to_owned(),
    ));
    let run = capture(&config, expected)?;
    let first_record = run.seconds - run.first_to_last;
    eprintln!(
        "{name}: capturer ({read_mode}) {:.2}s (first record after {first_record:.2}s), CPU {:.2}s, observer CPU {:.2}s",
        run.seconds, run.cpu, run.observer_cpu
    );
    Ok(CapturePhase {
        seconds: run.seconds,
        first_record,
        cpu: run.cpu,
        dockerd_cpu: run
            .dockerd_cpu
            .context("dockerd's CPU time during the capture (its pid was not found)")?,
        observer_cpu: run.observer_cpu,
    })
}

/// One capturer run until its file sink holds the expected lines.
#[derive(Debug, Clone, Copy)]
pub(super) struct CaptureRun {
    /// From spawn until the file sink holds every line.
    pub(super) seconds: f64,
    /// From the first record to the last.
    pub(super) first_to_last: f64,
    /// The capturer's CPU seconds.
    pub(super) cpu: f64,
    /// dockerd's CPU seconds meanwhile; `None` when its pid is not found.
    pub(super) dockerd_cpu: Option<f64>,
    /// This process's CPU seconds meanwhile.
    pub(super) observer_cpu: f64,
}

/// Runs the capturer with `config` until its file sink holds `expected` lines.
pub(super) fn capture(config: &CapturerConfig, expected: u64) -> Result<CaptureRun> {
    // The daemon `$DOCKER_HOST` names (several may run: private test daemons).
    let dockerd = procfs::daemon_pid().ok();
    let dockerd_before = dockerd.map(procfs::cpu_seconds).transpose()?;
    let observer_before = procfs::cpu_seconds(std::process::id())?;
    let started = Instant::now();
    let capturer = Capturer::spawn(config)?;
    let mut tail = FileTail::new(capturer.records_path());
    let mut records = 0;
    let mut first_record = None;
    let deadline = Duration::from_secs(60).max(Duration::from_secs(expected / 5_000));
    while records < expected {
        // One poll can last the whole run (it reads until it finds the end, and a fast
        // capturer keeps writing): the first record is timed when its line is seen.
        records += tail.poll(|_| {
            first_record.get_or_insert_with(|| started.elapsed());
        })?;
        if started.elapsed() > deadline {
            bail!(
                "the capturer delivered {records} of {expected} lines in {deadline:?}; its log:\n{}",
                capturer.log_tail()
            );
        }
        if records < expected {
            std::thread::sleep(POLL);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let observer_cpu = procfs::cpu_seconds(std::process::id())? - observer_before;
    let cpu = procfs::cpu_seconds(capturer.pid())?;
    let dockerd_cpu = match (dockerd, dockerd_before) {
        (Some(pid), Some(before)) => Some(procfs::cpu_seconds(pid)? - before),
        _ => None,
    };
    capturer.stop(Duration::from_secs(30))?;
    let first = first_record.unwrap_or_default().as_secs_f64();
    Ok(CaptureRun {
        seconds,
        first_to_last: seconds - first,
        cpu,
        dockerd_cpu,
        observer_cpu,
    })
}

/// What the raw reader got from one container.
#[derive(Debug)]
struct RawRead {
    bytes: u64,
    frames: u64,
}

/// Waits (up to 5 minutes) until Docker holds all `lines` lines of a generator (its last line is
/// number `lines - 1`), looking every `poll`.
pub(super) fn wait_written(id: &str, lines: u64, poll: Duration) -> Result<()> {
    let last = (lines - 1).to_string();
    let what = format!("{id} to write its {lines} lines");
    wait::until_every(poll, Duration::from_secs(300), &what, || {
        let tail = docker::cli(&["logs", "--tail", "1", id])?;
        Ok(tail.split(' ').nth(3) == Some(last.as_str()))
    })
    .map(drop)
}

/// Reads one container's followed log stream until it has delivered `lines` lines, discarding
/// the bytes and counting frames.
fn raw_read(socket: &PathBuf, id: &str, lines: u64) -> Result<RawRead> {
    let mut stream =
        UnixStream::connect(socket).with_context(|| format!("connect to {}", socket.display()))?;
    write!(
        stream,
        "GET /containers/{id}/logs?follow=1&stdout=1&stderr=1&timestamps=1 HTTP/1.0\r\n\
         Host: docker\r\n\r\n"
    )?;
    let mut buffer = vec![0; RAW_READ_BUFFER];
    let mut head = Vec::new();
    let mut frames = FrameCounter::default();
    let mut bytes = 0;
    let mut in_body = false;
    while frames.frames < lines || frames.payload_left > 0 {
        let read = stream.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        bytes += read as u64;
        if in_body {
            frames.feed(&buffer[..read]);
            continue;
        }
        head.extend_from_slice(&buffer[..read]);
        if let Some(end) = head.windows(4).position(|window| window == b"\r\n\r\n") {
            let status_line = String::from_utf8_lossy(&head[..head.len().min(40)]).into_owned();
            if !status_line.starts_with("HTTP/1.0 200") && !status_line.starts_with("HTTP/1.1 200")
            {
                bail!("Docker answered {status_line:?} for the logs of {id}");
            }
            frames.feed(&head[end + 4..]);
            in_body = true;
        }
    }
    Ok(RawRead {
        bytes,
        frames: frames.frames,
    })
}

/// Counts the frames of Docker's multiplexed stream: an 8-byte header (stream, 3 zero bytes,
/// big-endian payload length) before each payload. The header bytes can hold any value, so
/// counting newlines would not do.
#[derive(Debug, Default)]
struct FrameCounter {
    header: [u8; 8],
    header_length: usize,
    payload_left: usize,
    frames: u64,
}

impl FrameCounter {
    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.payload_left > 0 {
                let skip = self.payload_left.min(data.len());
                self.payload_left -= skip;
                data = &data[skip..];
                continue;
            }
            let take = (8 - self.header_length).min(data.len());
            self.header[self.header_length..self.header_length + take]
                .copy_from_slice(&data[..take]);
            self.header_length += take;
            data = &data[take..];
            if self.header_length == 8 {
                let length = u32::from_be_bytes([
                    self.header[4],
                    self.header[5],
                    self.header[6],
                    self.header[7],
                ]);
                self.payload_left = length as usize;
                self.header_length = 0;
                self.frames += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::FrameCounter;

    #[test]
    fn frames_are_counted_across_reads_whatever_their_bytes() {
        let mut stream = Vec::new();
        for payload in [&b"a\n"[..], &[b'\n'; 10][..], b"xyz\n"] {
            stream.extend_from_slice(&[1, 0, 0, 0]);
            stream.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            stream.extend_from_slice(payload);
        }
        let mut counter = FrameCounter::default();
        for piece in stream.chunks(3) {
            counter.feed(piece);
        }
        assert_eq!(counter.frames, 3);
        assert_eq!(counter.payload_left, 0);
    }
}
