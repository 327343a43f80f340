//! The soak's cast of log generators and its timeline.
//!
//! Every generator is a `loggen` container (lines `<tag> <run> <stream> <seq> <padding>`) labelled
//! with the run's label, so the capturer watches only them and cleanup finds them all:
//!
//! | role        | what it does                                                             |
//! |-------------|--------------------------------------------------------------------------|
//! | `steady-N`  | `--rate R` lines/s forever (odd ones on stdout and stderr)               |
//! | `bursty`    | 1000 lines per stream at once, then 4 s of silence, forever              |
//! | `silent`    | silent for 40% of the run (at least 3 task timeouts), then 10 lines/s    |
//! | `tty`       | `docker run -t`, 20 lines/s on the terminal                              |
//! | `big`       | 2 lines/s of 40 KiB (Docker splits them into 16 KiB partial messages)    |
//! | `restarter` | 50 lines/s on both streams, `docker restart`ed every third of the run    |
//! |             | (clamped to 20 s ..= 3 min)                                              |
//! | `late`      | created at 35% of the run; a finite 50 lines/s, then stays alive, silent  |
//! | `doomed`    | 20 lines/s, stopped and removed at 45% of the run                        |

use std::time::{Duration, Instant};

use super::SoakOptions;

/// Every line's size (padding included) unless a role says otherwise.
const LINE_SIZE: usize = 100;
/// The big generator's line size: past Docker's 16 KiB split, so partial messages are joined.
const BIG_LINE_SIZE: usize = 40 * 1024;
/// How long after a container (re)starts the capturer may take to list it as running.
pub(crate) const SETTLE: Duration = Duration::from_secs(10);

/// What a generator is for; decides its timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Steady,
    Bursty,
    Silent,
    Tty,
    Big,
    Restarter,
    Late,
    Doomed,
}

/// One log generator container and what happened to it.
#[derive(Debug, Clone)]
pub(crate) struct Generator {
    /// The loggen tag, also the short name in reports (`steady-0`, `tty`, ...).
    pub(crate) tag: String,
    pub(crate) role: Role,
    /// `docker run` flags before the image (`-t` for the TTY generator).
    pub(crate) docker_flags: Vec<String>,
    /// The loggen arguments.
    pub(crate) loggen_args: Vec<String>,
    /// The exact length of every message (loggen pads each line to it).
    pub(crate) line_size: usize,
    /// For finite generators: lines per stream.
    pub(crate) finite_lines: Option<u64>,
    /// The full container id, once started.
    pub(crate) id: Option<String>,
    /// Until when the capturer may lack a running task for it (start-up, restart).
    pub(crate) settling_until: Option<Instant>,
    /// Whether it has been removed (then no task is expected).
    pub(crate) removed: bool,
    pub(crate) restarts: u32,
}

impl Generator {
    fn new(tag: String, role: Role, line_size: usize, loggen_args: &[String]) -> Generator {
        let mut args = vec![
            "--tag".to_owned(),
            tag.clone(),
            "--size".to_owned(),
            line_size.to_string(),
        ];
        args.extend_from_slice(loggen_args);
        Generator {
            tag,
            role,
            docker_flags: Vec::new(),
            loggen_args: args,
            line_size,
            finite_lines: None,
            id: None,
            settling_until: None,
            removed: false,
            restarts: 0,
        }
    }

    /// The `docker run` arguments after `--detach --label`: name, flags, image, loggen args.
    pub(crate) fn run_args(&self, run_id: &str, image: &str) -> Vec<String> {
        let mut args = vec!["--name".to_owned(), format!("lcsoak-{run_id}-{}", self.tag)];
        args.extend(self.docker_flags.iter().cloned());
        args.push(image.to_owned());
        args.extend(self.loggen_args.iter().cloned());
        args
    }

    /// Whether /health must list a running task for it at `now`.
    pub(crate) fn expects_running_task(&self, now: Instant) -> bool {
        self.id.is_some() && !self.removed && self.settling_until.is_none_or(|until| now >= until)
    }
}

/// The generators and when things happen to them.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) generators: Vec<Generator>,
    /// How often the restarter is restarted (the first time after one interval).
    pub(crate) restart_interval: Duration,
    /// How long the silent generator stays silent.
    pub(crate) silent_for: Duration,
    /// When the late generator is created.
    pub(crate) late_at: Duration,
    /// When the doomed generator is stopped and removed.
    pub(crate) doomed_at: Duration,
}

/// Lays out the soak for these options.
pub(crate) fn plan(options: &SoakOptions) -> Plan {
    let duration = options.duration;
    let forever = |rate: u64| -> Vec<String> {
        vec![
            "--lines".to_owned(),
            "0".to_owned(),
            "--rate".to_owned(),
            rate.to_string(),
        ]
    };
    let both = |mut args: Vec<String>| -> Vec<String> {
        args.extend(["--stream".to_owned(), "both".to_owned()]);
        args
    };
    let mut generators = Vec::new();
    for index in 0..options.containers {
        let args = forever(options.rate);
        let args = if index % 2 == 1 { both(args) } else { args };
        generators.push(Generator::new(
            format!("steady-{index}"),
            Role::Steady,
            LINE_SIZE,
            &args,
        ));
    }
    let bursty = both(vec![
        "--lines".to_owned(),
        "0".to_owned(),
        "--burst".to_owned(),
        "1000".to_owned(),
        "--burst-pause-ms".to_owned(),
        "4000".to_owned(),
    ]);
    generators.push(Generator::new(
        "bursty".to_owned(),
        Role::Bursty,
        LINE_SIZE,
        &bursty,
    ));

    // Silent past several task timeouts (the original failure: a quiet container's task was
    // declared dead), but speaking up before the run ends so its lines are counted too.
    let silent_for = duration
        .mul_f64(0.4)
        .max(options.task_timeout * 3)
        .min(duration.mul_f64(0.8));
    let mut silent = forever(10);
    silent.extend(["--delay-secs".to_owned(), silent_for.as_secs().to_string()]);
    generators.push(Generator::new(
        "silent".to_owned(),
        Role::Silent,
        LINE_SIZE,
        &silent,
    ));

    let mut tty_args = forever(20);
    tty_args.extend(["--stream".to_owned(), "tty".to_owned()]);
    let mut tty = Generator::new("tty".to_owned(), Role::Tty, 80, &tty_args);
    tty.docker_flags.push("-t".to_owned());
    generators.push(tty);

    generators.push(Generator::new(
        "big".to_owned(),
        Role::Big,
        BIG_LINE_SIZE,
        &forever(2),
    ));
    generators.push(Generator::new(
        "restarter".to_owned(),
        Role::Restarter,
        LINE_SIZE,
        &both(forever(50)),
    ));

    // The late generator finishes its lines at about 65% of the run, then stays alive silently,
    // so its task must keep running with nothing to read.
    let late_at = duration.mul_f64(0.35);
    let late_lines = (duration.as_secs_f64() * 0.3 * 50.0).max(50.0) as u64;
    let late_args = vec![
        "--lines".to_owned(),
        late_lines.to_string(),
        "--rate".to_owned(),
        "50".to_owned(),
        "--hold-secs".to_owned(),
        "-1".to_owned(),
    ];
    let mut late = Generator::new("late".to_owned(), Role::Late, LINE_SIZE, &late_args);
    late.finite_lines = Some(late_lines);
    generators.push(late);
    generators.push(Generator::new(
        "doomed".to_owned(),
        Role::Doomed,
        LINE_SIZE,
        &forever(20),
    ));

    Plan {
        generators,
        restart_interval: duration
            .div_f64(3.0)
            .clamp(Duration::from_secs(20), Duration::from_secs(180)),
        silent_for,
        late_at,
        doomed_at: duration.mul_f64(0.45),
    }
}
