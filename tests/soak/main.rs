//! The soak: runs the capturer against a mix of log generators for a long time and fails unless
//! it stayed healthy, did not leak, and delivered every line exactly once. One test, [`soak`],
//! left out of the default filter (`.config/nextest.toml`): `cargo xtask soak [options]` builds
//! the release capturer and runs it with nextest, its options in the environment (see
//! [`SoakOptions::from_env`]; the defaults are the command line's).
//!
//! It contains the project's original verification (every 30 s for 10 minutes: fail at once on a
//! `failed` container task; fail when from the 13th check on none is `running`) and adds what that
//! never checked: that the logs arrived, whole and in order, and that resources stay flat. The
//! rules and thresholds are documented in [`checks`]; the generators and the timeline in
//! [`scenario`]; how lines are counted in test-support's
//! [`Ledger`].
//!
//! Phases: remove containers left by an interrupted run; start the capturer (file sink, fresh
//! data dir, only this run's label) and the generators; for the duration, sample resources every
//! few seconds, check /health every check interval (min(30 s, duration / 20)), restart, create
//! and remove containers on schedule; then stop the generators, take Docker's own logs as the
//! truth, wait (bounded) until the file holds them all, stop the capturer with SIGTERM and count.
//! Reports go to `target/soak/` (`report.json`, `report.md`, `resources.svg`; the capturer's log
//! is `log-capturer.log`, its data dir `data/`).
//!
//! Cleanup: every container carries the label `log-capturer-soak=<run id>` and is removed when the
//! run ends, also on failure (a drop guard), unless kept (`--keep`). Ctrl-C kills the test before
//! any guard runs (std has no signal API), so each run starts by removing every container that
//! still carries the `log-capturer-soak` label key: an interrupted run is cleaned by the next one
//! (or by hand: `docker rm -f $(docker ps -aq --filter label=log-capturer-soak)`). The capturer
//! gets the same Ctrl-C from the terminal and shuts itself down.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod checks;
mod output;
mod scenario;

use std::{
    path::PathBuf,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use test_support::ledger::Ledger;

use self::{
    checks::{HealthCheck, HealthContext, LeakRule, Trend},
    scenario::{Generator, Plan, Role, SETTLE},
};
use test_support::report::{fresh_dir, mib};
use test_support::{
    capturer::{Capturer, CapturerConfig, capturer_binary},
    docker::{self, ContainerSet, logs_bytes, remove_labelled, require_daemon, workspace_root},
    procfs,
    time::{clock, format_duration, parse_duration},
};

/// The label key on every soak container; the value is the run id.
const LABEL_KEY: &str = "log-capturer-soak";
/// How often the main loop wakes to read the file, run due events and checks.
const TICK: Duration = Duration::from_millis(200);
/// How often progress is printed.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(5);
/// The longest wait for the file to hold every line Docker has, after the generators stop.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);
/// The drain also ends when no record arrived for this long.
const DRAIN_STALL: Duration = Duration::from_secs(30);
/// How long the capturer may take to exit after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// How long the removed generator's lines may take to reach the file before it is removed.
const DOOMED_DRAIN: Duration = Duration::from_secs(15);

/// What `cargo xtask soak` was told (its `--help` says what each is).
#[derive(Debug, Clone)]
pub(crate) struct SoakOptions {
    pub(crate) binary: PathBuf,
    pub(crate) duration: Duration,
    pub(crate) containers: usize,
    pub(crate) rate: u64,
    pub(crate) heartbeat_interval: Duration,
    pub(crate) task_timeout: Duration,
    pub(crate) keep: bool,
    pub(crate) sink_loki: Option<String>,
    pub(crate) read_mode: Option<String>,
}

impl SoakOptions {
    /// The runner's options: `LC_SOAK_DURATION`, `LC_SOAK_CONTAINERS`, `LC_SOAK_RATE`,
    /// `LC_SOAK_HEARTBEAT_INTERVAL`, `LC_SOAK_TASK_TIMEOUT` (required), `LC_SOAK_KEEP=1`,
    /// `LC_SOAK_SINK_LOKI`, `LC_SOAK_READ_MODE`, `LC_SOAK_BINARY` (else test-support's
    /// [`capturer_binary`]).
    fn from_env() -> Result<SoakOptions> {
        let var = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        let required = |name: &str| {
            var(name).with_context(|| format!("{name} is not set: run `cargo xtask soak`"))
        };
        let number = |name: &str| -> Result<u64> {
            let text = required(name)?;
            text.parse().with_context(|| format!("{name}={text:?}"))
        };
        let options = SoakOptions {
            binary: var("LC_SOAK_BINARY").map_or_else(capturer_binary, Into::into),
            duration: parse_duration(&required("LC_SOAK_DURATION")?)?,
            containers: usize::try_from(number("LC_SOAK_CONTAINERS")?)?,
            rate: number("LC_SOAK_RATE")?,
            heartbeat_interval: parse_duration(&required("LC_SOAK_HEARTBEAT_INTERVAL")?)?,
            task_timeout: parse_duration(&required("LC_SOAK_TASK_TIMEOUT")?)?,
            keep: var("LC_SOAK_KEEP").is_some_and(|keep| keep == "1"),
            sink_loki: var("LC_SOAK_SINK_LOKI"),
            read_mode: var("LC_SOAK_READ_MODE"),
        };
        options.check()?;
        Ok(options)
    }

    /// Refuses what the options' types let through but a soak cannot run with.
    fn check(&self) -> Result<()> {
        if self.duration < Duration::from_secs(20) {
            bail!("--duration must be at least 20s");
        }
        if self.heartbeat_interval.is_zero() || self.task_timeout.is_zero() {
            bail!("--heartbeat-interval and --task-timeout must be positive");
        }
        Ok(())
    }

    /// min(30 s, duration / 20): the original's 30 s, scaled down for short runs.
    fn check_interval(&self) -> Duration {
        Duration::from_secs(30).min(self.duration / 20)
    }

    /// About a hundred samples per run, one every 1 to 5 s.
    fn sample_interval(&self) -> Duration {
        (self.duration / 100).clamp(Duration::from_secs(1), Duration::from_secs(5))
    }
}

/// One resource sample.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub(crate) elapsed: f64,
    pub(crate) rss_bytes: u64,
    pub(crate) open_fds: u64,
    pub(crate) tokio_tasks: Option<f64>,
    pub(crate) buffered_events: Option<f64>,
    pub(crate) lines_read: Option<f64>,
    pub(crate) records: u64,
}

impl Sample {
    /// Lines the capturer has read but the file does not hold yet (or, without the lines
    /// counter, what the sinks report as buffered).
    pub(crate) fn lag(&self) -> Option<f64> {
        self.lines_read
            .map(|read| read - self.records as f64)
            .or(self.buffered_events)
    }
}

/// One verdict line of the report.
#[derive(Debug, Clone)]
pub(crate) struct Verdict {
    pub(crate) name: String,
    pub(crate) passed: bool,
    pub(crate) detail: String,
}

/// The removed generator's way out.
#[derive(Debug)]
enum Doomed {
    /// Not yet due.
    Alive,
    /// `docker stop` and `docker logs` in the background.
    Stopping(JoinHandle<Result<(Vec<u8>, Vec<u8>)>>),
    /// Stopped; waiting for its lines to reach the file before `docker rm`.
    Draining {
        deadline: Instant,
    },
    Removed,
}

/// Everything a soak run observed, for the report.
#[derive(Debug)]
pub(crate) struct Observations {
    pub(crate) options: SoakOptions,
    pub(crate) run_id: String,
    pub(crate) plan: Plan,
    pub(crate) samples: Vec<Sample>,
    pub(crate) checks: Vec<HealthCheck>,
    pub(crate) accounting: Ledger,
    /// Seconds into the run at which a container was restarted, created or removed.
    pub(crate) churn: Vec<f64>,
    /// Why the run stopped early, or a harness error.
    pub(crate) aborted: Option<String>,
    pub(crate) drained: Option<Duration>,
    pub(crate) exit_code: Option<i32>,
    pub(crate) shutdown_error: Option<String>,
}

/// The soak, as `cargo xtask soak` configured it.
#[test]
fn soak() -> Result<()> {
    require_daemon();
    let options = SoakOptions::from_env()?;
    let leftovers = remove_labelled(LABEL_KEY)?;
    if leftovers > 0 {
        eprintln!("removed {leftovers} container(s) left by an earlier soak run");
    }
    let image = test_support::docker::loggen_image();
    let out_dir = workspace_root().join("target").join("soak");
    fresh_dir(&out_dir)?;
    let run_id = run_id();
    let containers = ContainerSet::new(LABEL_KEY, run_id.clone());
    let mut extra_env = compressed_timeouts(options.task_timeout);
    if let Some(mode) = &options.read_mode {
        extra_env.push(("LOG_CAPTURER_DOCKER_READ_MODE".to_owned(), mode.clone()));
    }
    if let Some(endpoint) = &options.sink_loki {
        // Configured sinks replace the default file sink: name it again, at the same path.
        let config = out_dir.join("sinks.toml");
        let records = out_dir.join("data").join("logs").join("containers.jsonl");
        std::fs::create_dir_all(&out_dir)?;
        std::fs::write(
            &config,
            format!(
                "[[sinks]]\ntype = \"file\"\npath = {records:?}\n\n\
                 [[sinks]]\ntype = \"loki\"\nendpoint = {endpoint:?}\n"
            ),
        )
        .with_context(|| format!("write {}", config.display()))?;
        extra_env.push((
            "LOG_CAPTURER_CONFIG".to_owned(),
            config.to_string_lossy().into_owned(),
        ));
    }
    let capturer_config = CapturerConfig {
        binary: options.binary.clone(),
        data_dir: out_dir.join("data"),
        include_label: containers.label(),
        heartbeat_interval: Some(options.heartbeat_interval),
        task_timeout: Some(options.task_timeout),
        read_from_beginning: true,
        log_file: out_dir.join("log-capturer.log"),
        extra_env,
    };
    eprintln!(
        "soak {run_id}: {} for {}, checks every {:?}, samples every {:?}",
        if options.keep {
            "keeping containers"
        } else {
            "running"
        },
        clock(options.duration),
        options.check_interval(),
        options.sample_interval()
    );
    let observations =
        Soak::new(options.clone(), run_id, image, &containers).execute(&capturer_config)?;
    let verdicts = output::verdicts(&observations);
    output::write_reports(&out_dir, &observations, &verdicts)?;
    output::print_summary(&observations, &verdicts);
    if options.keep {
        eprintln!(
            "--keep: containers left running; remove them with \
             docker rm -f $(docker ps -aq --filter label={LABEL_KEY})"
        );
        std::mem::forget(containers);
    } else {
        drop(containers);
    }
    let failed: Vec<&str> = verdicts
        .iter()
        .filter(|verdict| !verdict.passed)
        .map(|verdict| verdict.name.as_str())
        .collect();
    if !failed.is_empty() {
        bail!(
            "soak failed: {} (see {})",
            failed.join("; "),
            out_dir.join("report.md").display()
        );
    }
    eprintln!("soak passed ({})", out_dir.join("report.md").display());
    Ok(())
}

/// The state of a run in progress.
#[derive(Debug)]
struct Soak<'a> {
    options: SoakOptions,
    run_id: String,
    image: &'a str,
    containers: &'a ContainerSet,
    plan: Plan,
    accounting: Option<Ledger>,
    samples: Vec<Sample>,
    checks: Vec<HealthCheck>,
    churn: Vec<f64>,
    aborted: Option<String>,
    failures_baseline: Option<f64>,
    restart_job: Option<JoinHandle<Result<String>>>,
    next_restart: Duration,
    doomed: Doomed,
}

impl<'a> Soak<'a> {
    fn new(
        options: SoakOptions,
        run_id: String,
        image: &'a str,
        containers: &'a ContainerSet,
    ) -> Soak<'a> {
        let plan = scenario::plan(&options);
        Soak {
            next_restart: plan.restart_interval,
            options,
            run_id,
            image,
            containers,
            plan,
            accounting: None,
            samples: Vec::new(),
            checks: Vec::new(),
            churn: Vec::new(),
            aborted: None,
            failures_baseline: None,
            restart_job: None,
            doomed: Doomed::Alive,
        }
    }

    fn execute(mut self, config: &CapturerConfig) -> Result<Observations> {
        let capturer = Capturer::spawn(config)?;
        eprintln!(
            "log-capturer pid {} serving on {}",
            capturer.pid(),
            capturer.addr()
        );
        self.accounting = Some(Ledger::follow(capturer.records_path()));
        let start = Instant::now();
        if let Err(error) = self.start_generators(start) {
            self.aborted = Some(format!("starting the generators: {error:#}"));
        }
        if self.aborted.is_none() {
            self.main_loop(&capturer, start);
        }
        let (drained, exit_code, shutdown_error) = self.finish(capturer, start);
        Ok(Observations {
            options: self.options,
            run_id: self.run_id,
            plan: self.plan,
            samples: self.samples,
            checks: self.checks,
            accounting: self.accounting.context("accounting")?,
            churn: self.churn,
            aborted: self.aborted,
            drained,
            exit_code,
            shutdown_error,
        })
    }

    fn accounting(&mut self) -> &mut Ledger {
        self.accounting
            .as_mut()
            .expect("the accounting exists once the capturer runs")
    }

    fn index_of(&self, role: Role) -> Option<usize> {
        self.plan
            .generators
            .iter()
            .position(|generator| generator.role == role)
    }

    /// Starts every generator except the late one, in parallel.
    fn start_generators(&mut self, start: Instant) -> Result<()> {
        let initial: Vec<usize> = (0..self.plan.generators.len())
            .filter(|&index| self.plan.generators[index].role != Role::Late)
            .collect();
        let specs: Vec<Vec<String>> = initial
            .iter()
            .map(|&index| self.plan.generators[index].run_args(&self.run_id, self.image))
            .collect();
        let ids = self.containers.run_many(&specs)?;
        let settled = Instant::now() + SETTLE;
        for (index, id) in initial.into_iter().zip(ids) {
            self.adopt(index, id, settled);
        }
        eprintln!(
            "started {} generators in {:.1}s",
            specs.len(),
            start.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// Records a generator's container id and registers it with the accounting.
    fn adopt(&mut self, index: usize, id: String, settled: Instant) {
        let generator = &mut self.plan.generators[index];
        generator.settling_until = Some(settled);
        let (tag, size, lines) = (
            generator.tag.clone(),
            generator.line_size,
            generator.finite_lines,
        );
        generator.id = Some(id.clone());
        self.accounting().watch(&id, &tag, size, lines);
    }

    fn main_loop(&mut self, capturer: &Capturer, start: Instant) {
        let end = start + self.options.duration;
        let check_interval = self.options.check_interval();
        let sample_interval = self.options.sample_interval();
        let mut next_check = start + check_interval;
        let mut next_sample = start;
        let mut next_progress = start + PROGRESS_INTERVAL;
        loop {
            let now = Instant::now();
            if let Err(error) = self.tick(capturer, start, now) {
                self.aborted = Some(format!("{error:#}"));
                break;
            }
            if now >= next_sample {
                next_sample += sample_interval;
                match sample(capturer, start, self.accounting().records) {
                    Ok(sample) => self.samples.push(sample),
                    Err(error) => {
                        self.aborted = Some(format!("sampling the capturer: {error:#}"));
                        break;
                    }
                }
            }
            if now >= next_check {
                next_check += check_interval;
                let check = self.health_check(capturer, start, now);
                let problems: Vec<String> = check
                    .problems
                    .iter()
                    .map(|problem| problem.text.clone())
                    .collect();
                eprintln!(
                    "check {:2} at {}: running={} failed={} {}",
                    check.number,
                    clock(check.elapsed),
                    check.running,
                    check.failed,
                    if problems.is_empty() {
                        "ok".to_owned()
                    } else {
                        format!("FAILED: {}", problems.join("; "))
                    }
                );
                self.checks.push(check);
                if !problems.is_empty() {
                    self.aborted = Some(format!("health check failed: {}", problems.join("; ")));
                    break;
                }
            }
            if now >= next_progress {
                next_progress += PROGRESS_INTERVAL;
                self.progress(start, now);
            }
            if now >= end {
                break;
            }
            // The loop polls a file and a server that offer nothing to wait on.
            std::thread::sleep(TICK);
        }
    }

    /// Reads new records and runs the scenario events that are due.
    fn tick(&mut self, capturer: &Capturer, start: Instant, now: Instant) -> Result<()> {
        self.accounting().poll()?;
        if !capturer_alive(capturer) {
            bail!("log-capturer exited; its log:\n{}", capturer.log_tail());
        }
        let elapsed = now - start;
        self.restart_step(now, elapsed)?;
        if let Some(late) = self.index_of(Role::Late)
            && self.plan.generators[late].id.is_none()
            && elapsed >= self.plan.late_at
        {
            let args = self.plan.generators[late].run_args(&self.run_id, self.image);
            let id = self.containers.run(&args)?;
            self.adopt(late, id, Instant::now() + SETTLE);
            self.churn.push(elapsed.as_secs_f64());
            eprintln!("created the late generator at {}", clock(elapsed));
        }
        self.doomed_step(now, elapsed)
    }

    fn restart_step(&mut self, now: Instant, elapsed: Duration) -> Result<()> {
        let Some(index) = self.index_of(Role::Restarter) else {
            return Ok(());
        };
        if let Some(job) = self.restart_job.take_if(|job| job.is_finished()) {
            job.join()
                .map_err(|_| anyhow::anyhow!("the restart thread panicked"))??;
            let generator = &mut self.plan.generators[index];
            generator.settling_until = Some(now + SETTLE);
            generator.restarts += 1;
        }
        // A restart in the last moments would be cut short by the end of the run.
        if self.restart_job.is_none()
            && elapsed >= self.next_restart
            && elapsed + SETTLE < self.options.duration
        {
            self.next_restart += self.plan.restart_interval;
            let generator = &mut self.plan.generators[index];
            let Some(id) = generator.id.clone() else {
                return Ok(());
            };
            // No task is expected until the restart is over and has settled.
            generator.settling_until = Some(now + Duration::from_secs(3600));
            self.churn.push(elapsed.as_secs_f64());
            eprintln!("restarting the restarter at {}", clock(elapsed));
            self.restart_job = Some(std::thread::spawn(move || {
                docker::cli(&["restart", "--time", "1", &id])
            }));
        }
        Ok(())
    }

    fn doomed_step(&mut self, now: Instant, elapsed: Duration) -> Result<()> {
        let Some(index) = self.index_of(Role::Doomed) else {
            return Ok(());
        };
        let Some(id) = self.plan.generators[index].id.clone() else {
            return Ok(());
        };
        match &self.doomed {
            Doomed::Alive if elapsed >= self.plan.doomed_at => {
                eprintln!(
                    "stopping and removing the doomed generator at {}",
                    clock(elapsed)
                );
                self.plan.generators[index].removed = true;
                self.churn.push(elapsed.as_secs_f64());
                self.doomed = Doomed::Stopping(std::thread::spawn(move || {
                    docker::cli(&["stop", "--time", "1", &id])?;
                    logs_bytes(&id)
                }));
            }
            Doomed::Stopping(job) if job.is_finished() => {
                let Doomed::Stopping(job) = std::mem::replace(&mut self.doomed, Doomed::Removed)
                else {
                    unreachable!("matched above");
                };
                let (stdout, stderr) = job
                    .join()
                    .map_err(|_| anyhow::anyhow!("the stop thread panicked"))??;
                self.accounting().add_truth_from(&id, &stdout, &stderr);
                self.doomed = Doomed::Draining {
                    deadline: now + DOOMED_DRAIN,
                };
            }
            &Doomed::Draining { deadline } => {
                let accounting = self.accounting();
                if accounting.records_for(&id) >= accounting.expected_for(&id) || now >= deadline {
                    docker::cli(&["rm", "--force", &id])?;
                    self.doomed = Doomed::Removed;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn health_check(&mut self, capturer: &Capturer, start: Instant, now: Instant) -> HealthCheck {
        let context = HealthContext {
            number: self.checks.len() + 1,
            elapsed: now - start,
            now,
            generators: &self.plan.generators,
            heartbeat_interval: self.options.heartbeat_interval,
            failures_baseline: self.failures_baseline,
        };
        let answers = capturer.health_status().and_then(|(status, health)| {
            capturer.scrape().map(|metrics| (status, health, metrics))
        });
        match answers {
            Ok((status, health, metrics)) => {
                let check = checks::health_check(&context, status, &health, &metrics);
                self.failures_baseline
                    .get_or_insert(check.task_failures_total);
                check
            }
            Err(error) => HealthCheck {
                number: context.number,
                elapsed: context.elapsed,
                running: 0,
                failed: 0,
                worst_heartbeat_age: None,
                task_failures_total: f64::NAN,
                problems: vec![checks::Problem {
                    rule: checks::Rule::NotUnhealthy,
                    text: format!("/health or /metrics unreachable: {error:#}"),
                }],
            },
        }
    }

    fn progress(&mut self, start: Instant, now: Instant) {
        let elapsed = now - start;
        let remaining = self.options.duration.saturating_sub(elapsed);
        let records = self.accounting().records;
        let last = self.samples.last();
        eprintln!(
            "[soak {} / {}, {} left] records={records} rss={} fds={} tasks={} lag={} checks={} ok",
            clock(elapsed),
            clock(self.options.duration),
            clock(remaining),
            last.map_or("?".to_owned(), |sample| mib(sample.rss_bytes as f64)),
            last.map_or("?".to_owned(), |sample| sample.open_fds.to_string()),
            last.and_then(|sample| sample.tokio_tasks)
                .map_or("?".to_owned(), |tasks| format!("{tasks:.0}")),
            last.and_then(Sample::lag)
                .map_or("?".to_owned(), |lag| format!("{lag:.0}")),
            self.checks.len()
        );
    }

    /// Stops the generators, takes the truth, drains, stops the capturer. Returns the drain time
    /// (when complete), the capturer's exit code, and any error on the way.
    fn finish(
        &mut self,
        capturer: Capturer,
        start: Instant,
    ) -> (Option<Duration>, Option<i32>, Option<String>) {
        let mut errors = Vec::new();
        if let Some(job) = self.restart_job.take() {
            let _ = job.join();
        }
        if let Err(error) = self.stop_generators() {
            errors.push(format!("stopping the generators: {error:#}"));
        }
        let drained = self.drain(start);
        let exit_code = match capturer.stop(SHUTDOWN_GRACE) {
            Ok(code) => Some(code),
            Err(error) => {
                errors.push(format!("{error:#}"));
                None
            }
        };
        // The capturer flushes on shutdown; read what it wrote last.
        if let Err(error) = self.accounting().poll() {
            errors.push(format!("reading the file sink: {error:#}"));
        }
        let error = (!errors.is_empty()).then(|| errors.join("; "));
        (drained, exit_code, error)
    }

    fn stop_generators(&mut self) -> Result<()> {
        // The removed generator's truth was taken before its removal; collect it if that is
        // still under way. If it was never due, it is stopped with the others below.
        if let Doomed::Stopping(job) = std::mem::replace(&mut self.doomed, Doomed::Removed) {
            let (stdout, stderr) = job
                .join()
                .map_err(|_| anyhow::anyhow!("the stop thread panicked"))??;
            if let Some(id) = self
                .index_of(Role::Doomed)
                .and_then(|index| self.plan.generators[index].id.clone())
            {
                self.accounting().add_truth_from(&id, &stdout, &stderr);
            }
        }
        let live: Vec<String> = self
            .plan
            .generators
            .iter()
            .filter(|generator| !generator.removed)
            .filter_map(|generator| generator.id.clone())
            .collect();
        if live.is_empty() {
            return Ok(());
        }
        eprintln!("stopping {} generators", live.len());
        let mut args = vec!["stop", "--time", "1"];
        args.extend(live.iter().map(String::as_str));
        docker::cli(&args)?;
        for id in &live {
            let (stdout, stderr) = logs_bytes(id)?;
            self.accounting().add_truth_from(id, &stdout, &stderr);
        }
        Ok(())
    }

    /// Waits until the file holds every line Docker has, bounded.
    fn drain(&mut self, start: Instant) -> Option<Duration> {
        let began = Instant::now();
        let expected = self.accounting().expected_total();
        let mut last_progress = Instant::now();
        eprintln!("draining: {expected} lines expected");
        loop {
            let read = self.accounting().poll().unwrap_or(0);
            if read > 0 {
                last_progress = Instant::now();
            }
            if self.accounting().records >= expected {
                // One more look so duplicates written right after are counted too.
                std::thread::sleep(Duration::from_millis(500));
                let _ = self.accounting().poll();
                eprintln!(
                    "drained in {:.1}s ({} into the run)",
                    began.elapsed().as_secs_f64(),
                    clock(start.elapsed())
                );
                return Some(began.elapsed());
            }
            if began.elapsed() > DRAIN_TIMEOUT || last_progress.elapsed() > DRAIN_STALL {
                eprintln!(
                    "drain incomplete after {:.1}s: {} of {expected} records",
                    began.elapsed().as_secs_f64(),
                    self.accounting().records
                );
                return None;
            }
            std::thread::sleep(TICK);
        }
    }
}

/// The Docker source's own deadlines must stay below the task timeout (the capturer refuses
/// the configuration otherwise: `inactivity_timeout` defaults to 60 s, `request_timeout` to
/// 30 s). A compressed run scales them down with it: half the task timeout, at least 1 s.
fn compressed_timeouts(task_timeout: Duration) -> Vec<(String, String)> {
    let half = (task_timeout / 2).max(Duration::from_secs(1));
    let mut env = Vec::new();
    if task_timeout <= Duration::from_secs(60) {
        env.push((
            "LOG_CAPTURER_DOCKER_INACTIVITY_TIMEOUT".to_owned(),
            format_duration(half),
        ));
    }
    if task_timeout <= Duration::from_secs(30) {
        env.push((
            "LOG_CAPTURER_DOCKER_REQUEST_TIMEOUT".to_owned(),
            format_duration(half),
        ));
    }
    env
}

/// Whether the capturer process still runs (an exited, unreaped child is a zombie).
fn capturer_alive(capturer: &Capturer) -> bool {
    procfs::is_alive(capturer.pid())
}

/// Reads the capturer's resource figures.
fn sample(capturer: &Capturer, start: Instant, records: u64) -> Result<Sample> {
    let pid = capturer.pid();
    let metrics = capturer.scrape()?;
    Ok(Sample {
        elapsed: start.elapsed().as_secs_f64(),
        rss_bytes: procfs::rss_bytes(pid)?,
        open_fds: procfs::open_fds(pid)?,
        tokio_tasks: metrics.sum("tokio_alive_tasks", &[]),
        buffered_events: metrics.sum("log_capturer_sink_buffered_events", &[]),
        lines_read: metrics.sum("log_capturer_lines_total", &[]),
        records,
    })
}

/// The leak verdicts over the samples.
pub(crate) fn trends(observations: &Observations) -> Vec<Trend> {
    let samples = &observations.samples;
    let run = observations.options.duration;
    let half = run.as_secs_f64() / 2.0;
    let churn = observations.churn.iter().filter(|&&at| at >= half).count() as f64;
    let series = |value: &dyn Fn(&Sample) -> Option<f64>| -> Vec<(f64, f64)> {
        samples
            .iter()
            .filter_map(|sample| value(sample).map(|value| (sample.elapsed, value)))
            .collect()
    };
    let total_rate =
        observations.options.rate as f64 * observations.options.containers as f64 * 1.5;
    vec![
        checks::trend(
            "RSS",
            "MiB",
            &series(&|sample| Some(sample.rss_bytes as f64 / (1024.0 * 1024.0))),
            run,
            LeakRule::SlopeAndRelativeGrowth(
                checks::RSS_SLOPE_LIMIT_MIB_PER_MIN,
                checks::RSS_GROWTH_LIMIT,
            ),
        ),
        checks::trend(
            "open fds",
            "fds",
            &series(&|sample| Some(sample.open_fds as f64)),
            run,
            LeakRule::AbsoluteGrowth(checks::FD_ALLOWANCE + checks::FD_PER_CHURN * churn),
        ),
        checks::trend(
            "tokio_alive_tasks",
            "tasks",
            &series(&|sample| sample.tokio_tasks),
            run,
            LeakRule::AbsoluteGrowth(checks::TASK_ALLOWANCE + checks::TASKS_PER_CHURN * churn),
        ),
        checks::trend(
            "sink lag",
            "lines",
            &series(&Sample::lag),
            run,
            LeakRule::AbsoluteGrowth(checks::LAG_ALLOWANCE_LINES.max(10.0 * total_rate)),
        ),
    ]
}

/// The generators by tag, for the report.
pub(crate) fn generators(observations: &Observations) -> &[Generator] {
    &observations.plan.generators
}

/// An id for this run (hex seconds since the epoch and the process id), in labels and reports.
fn run_id() -> String {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    format!("{seconds:x}{:04x}", std::process::id() & 0xffff)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::SoakOptions;

    #[test]
    fn runs_too_short_or_without_timeouts_are_refused() {
        let good = SoakOptions {
            binary: "log-capturer".into(),
            duration: Duration::from_secs(120),
            containers: 4,
            rate: 100,
            heartbeat_interval: Duration::from_secs(1),
            task_timeout: Duration::from_secs(5),
            keep: false,
            sink_loki: None,
            read_mode: None,
        };
        assert!(good.check().is_ok());
        for bad in [
            SoakOptions {
                duration: Duration::from_secs(5),
                ..good.clone()
            },
            SoakOptions {
                task_timeout: Duration::ZERO,
                ..good.clone()
            },
            SoakOptions {
                heartbeat_interval: Duration::ZERO,
                ..good.clone()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }
}
