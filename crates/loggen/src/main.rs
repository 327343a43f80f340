//! `loggen`: writes numbered log lines that a checker can count exactly.
//!
//! Every line is `<tag> <run> <stream> <seq> <padding>`:
//! - `tag` names the generator (the container's role in a test),
//! - `run` is unique per process start, so a restarted container's lines are told apart,
//! - `stream` is `out` or `err` (or `tty`, which the checker maps to the container's one stream),
//! - `seq` counts from 0 per stream and run, so loss, duplication and reordering are visible.
//!
//! It has no dependencies so that it builds as a static binary for a `FROM scratch` image.
//! Run `loggen --help` for the options.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::{
    io::{self, Write},
    process::ExitCode,
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

const HELP: &str = "\
loggen: writes numbered log lines `<tag> <run> <stream> <seq> <padding>`

Options:
  --tag NAME           tag of every line (default: gen)
  --lines N            lines per stream to write, 0 = forever (default: 10)
  --rate N             lines per second per stream, 0 = as fast as possible (default: 0)
  --size BYTES         pad each line to this many bytes, newline excluded (default: 0 = no padding)
  --stream S           out, err, both (alternating) or tty (default: out)
  --delay-secs S       stay silent this long before writing (default: 0)
  --burst N            write N lines at a time, then pause --burst-pause-ms (default: off)
  --burst-pause-ms MS  pause between bursts (default: 1000)
  --hold-secs S        stay alive (silent) this long after writing, -1 = forever (default: 0)
  --run ID             run id (default: derived from the start time and pid)
  --exit-code N        exit with this code (default: 0)
";

#[derive(Debug)]
struct Options {
    tag: String,
    lines: u64,
    rate: u64,
    size: usize,
    streams: Vec<Target>,
    delay: Duration,
    burst: u64,
    burst_pause: Duration,
    hold_secs: i64,
    run: String,
    exit_code: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Out,
    Err,
    Tty,
}

impl Target {
    fn label(self) -> &'static str {
        match self {
            Target::Out => "out",
            Target::Err => "err",
            Target::Tty => "tty",
        }
    }
}

fn parse_args() -> Result<Options, String> {
    let start = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut options = Options {
        tag: "gen".to_owned(),
        lines: 10,
        rate: 0,
        size: 0,
        streams: vec![Target::Out],
        delay: Duration::ZERO,
        burst: 0,
        burst_pause: Duration::from_millis(1000),
        hold_secs: 0,
        run: format!("{:x}{:04x}", start.as_micros(), std::process::id() & 0xffff),
        exit_code: 0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            print!("{HELP}");
            std::process::exit(0);
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = |v: &str| v.parse::<i64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--tag" => options.tag = value,
            "--lines" => options.lines = number(&value)?.max(0) as u64,
            "--rate" => options.rate = number(&value)?.max(0) as u64,
            "--size" => options.size = number(&value)?.max(0) as usize,
            "--stream" => {
                options.streams = match value.as_str() {
                    "out" => vec![Target::Out],
                    "err" => vec![Target::Err],
                    "both" => vec![Target::Out, Target::Err],
                    "tty" => vec![Target::Tty],
                    other => return Err(format!("--stream: unknown stream {other:?}")),
                }
            }
            "--delay-secs" => options.delay = Duration::from_secs(number(&value)?.max(0) as u64),
            "--burst" => options.burst = number(&value)?.max(0) as u64,
            "--burst-pause-ms" => {
                options.burst_pause = Duration::from_millis(number(&value)?.max(0) as u64)
            }
            "--hold-secs" => options.hold_secs = number(&value)?,
            "--run" => options.run = value,
            "--exit-code" => options.exit_code = number(&value)?.clamp(0, 255) as u8,
            other => return Err(format!("unknown option {other}\n\n{HELP}")),
        }
    }
    Ok(options)
}

fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("loggen: {message}");
            return ExitCode::from(64);
        }
    };
    thread::sleep(options.delay);
    if let Err(error) = generate(&options) {
        // A closed pipe is how a consumer says it has seen enough.
        if error.kind() != io::ErrorKind::BrokenPipe {
            eprintln!("loggen: {error}");
            return ExitCode::from(1);
        }
    }
    match options.hold_secs {
        secs if secs < 0 => loop {
            thread::sleep(Duration::from_secs(3600));
        },
        secs => thread::sleep(Duration::from_secs(secs as u64)),
    }
    ExitCode::from(options.exit_code)
}

fn generate(options: &Options) -> io::Result<()> {
    let stdout = io::stdout();
    let stderr = io::stderr();
    // Block buffering at full speed (the fastest a program can write); a flush per tick when
    // rate-limited, so lines leave promptly.
    let mut out = io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    let mut err = io::BufWriter::with_capacity(64 * 1024, stderr.lock());
    let mut line = Vec::with_capacity(options.size.max(64) + 1);
    let started = Instant::now();
    let mut seq: u64 = 0;
    loop {
        if options.lines != 0 && seq >= options.lines {
            break;
        }
        for &target in &options.streams {
            line.clear();
            write!(
                line,
                "{} {} {} {}",
                options.tag,
                options.run,
                target.label(),
                seq
            )?;
            if line.len() < options.size {
                line.push(b' ');
                let pad = options.size - line.len();
                line.extend(std::iter::repeat_n(b'x', pad));
            }
            line.push(b'\n');
            match target {
                Target::Out | Target::Tty => out.write_all(&line)?,
                Target::Err => err.write_all(&line)?,
            }
        }
        seq += 1;
        if options.burst != 0 && seq.is_multiple_of(options.burst) {
            out.flush()?;
            err.flush()?;
            thread::sleep(options.burst_pause);
        } else if options.rate != 0 {
            out.flush()?;
            err.flush()?;
            // Pace against the start time, not the previous line, so the rate does not drift.
            let due = started + Duration::from_secs_f64(seq as f64 / options.rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
        }
    }
    out.flush()?;
    err.flush()
}
