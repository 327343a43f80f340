//! One agent per data dir: a second `log-capturer` on a data dir in use exits 73 naming the
//! directory and the holder's pid, while the first keeps capturing; once the first is gone (even
//! by SIGKILL, since the kernel releases a `flock` with the process) a new one starts.

use std::{
    io::Read,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use end_to_end::{Capturer, capturer_binary, file_sink_records, unique_label};
use test_support::docker::{self, Container};

/// How long a refused second instance may take to exit.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs a second instance on `data_dir` to its exit: its exit code and stderr.
fn run_to_exit(data_dir: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(capturer_binary())
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--health-listen", "127.0.0.1:0"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start a second log-capturer");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the second log-capturer") {
            break status;
        }
        if started.elapsed() > REFUSAL_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the second log-capturer still runs after {REFUSAL_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    (status.code(), stderr)
}

fn records(data_dir: &Path) -> usize {
    file_sink_records(data_dir).len()
}

/// Waits until the file sink holds more than `than` records.
fn wait_more_records(data_dir: &Path, than: usize, capturer: &Capturer) -> usize {
    let started = Instant::now();
    loop {
        let count = records(data_dir);
        if count > than {
            return count;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no new records past {than}; log:\n{}",
            capturer.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_second_agent_on_a_locked_data_dir_exits_73_and_the_first_keeps_capturing() {
    let label = format!("log-capturer-e2e={}", unique_label("lock"));
    let _generator = Container::run(&[
        "--label",
        &label,
        docker::loggen_image(),
        "--tag",
        "lock",
        "--lines",
        "0",
        "--rate",
        "50",
    ]);
    let data_dir = tempfile::tempdir().unwrap();
    let absolute = std::fs::canonicalize(data_dir.path()).unwrap();
    let args = ["--include-label", label.as_str()];
    let mut first = Capturer::start(data_dir.path(), &args);
    let log = first.log_text();
    assert!(
        log.contains("data dir locked") && log.contains(&absolute.display().to_string()),
        "the resolved data dir is not logged:\n{log}"
    );
    let before = wait_more_records(data_dir.path(), 0, &first);

    let (code, stderr) = run_to_exit(data_dir.path(), &args);
    assert_eq!(code, Some(73), "stderr: {stderr}");
    assert!(
        stderr.contains(&absolute.display().to_string()),
        "the directory is not named: {stderr}"
    );
    assert!(
        stderr.contains(&format!("pid {}", first.pid())),
        "the holder's pid is not named: {stderr}"
    );

    // --check-config takes no lock: it works beside a running agent.
    let check = Command::new(capturer_binary())
        .arg("--data-dir")
        .arg(data_dir.path())
        .arg("--check-config")
        .output()
        .expect("run --check-config");
    assert!(check.status.success(), "{check:?}");

    // The first one was not disturbed.
    assert_eq!(first.get("/live").0, 200);
    let during = wait_more_records(data_dir.path(), before, &first);

    // SIGKILL leaves the lock file (with a stale pid) but the kernel drops the lock.
    first.signal("KILL");
    first.wait_exit(Duration::from_secs(10));
    drop(first);
    let third = Capturer::start(data_dir.path(), &args);
    wait_more_records(data_dir.path(), during, &third);
    let holder = std::fs::read_to_string(absolute.join("log-capturer.lock")).unwrap();
    assert_eq!(holder.trim(), third.pid().to_string());
}
