//! deploy/prometheus/alerts.yml: promtool's checks and unit tests, then a real Prometheus
//! evaluating the rules against a real agent whose tasks are really stalled.
//!
//! A faithful stall without a test hook: the container tasks run on the agent's
//! `docker-stream-N` threads, while the supervisor's watchdog (which publishes
//! `task_last_heartbeat`) and the health API run on the main runtime. Freezing only the stream
//! threads (ptrace `PTRACE_SEIZE` + `PTRACE_INTERRUPT`, from a small perl program, perl being
//! part of every Debian) is exactly a hung task: its heartbeat stops, the watchdog keeps
//! publishing the stale value, `/metrics` keeps answering. `SIGSTOP` of the whole process is
//! exactly a hung agent: the scrape fails and `up` drops to 0.

use std::{
    io::{BufRead, BufReader},
    net::{SocketAddr, TcpListener},
    path::Path,
    process::{Child, ChildStdin, Command, Stdio},
    time::Duration,
};

use end_to_end::{Capturer, container_tasks, unique_label};
use test_support::docker::{self, Container};

use crate::{deploy_dir, require_tool, run_ok, try_get, url_encode, wait_for};

/// The heartbeat rule's expression as shipped, and as the live test rewrites it: the agent
/// heartbeats every second there, so 5 s of silence is already a stall.
const HEARTBEAT_RULE: &str = r#"time() - task_last_heartbeat{type="container"} > 120"#;
const HEARTBEAT_RULE_FAST: &str = r#"time() - task_last_heartbeat{type="container"} > 5"#;

const STALE: &str = "LogCapturerTaskHeartbeatStale";
const DOWN: &str = "LogCapturerDown";
const FAILURES: &str = "LogCapturerTaskFailures";

/// Rule evaluations the alerts must stay quiet for while the agent is healthy.
const QUIET_EVALUATIONS: f64 = 8.0;

/// How long an alert may take to fire or resolve (evaluations run every second).
const ALERT_TIMEOUT: Duration = Duration::from_secs(45);

/// How long Prometheus may take to start serving.
const PROMETHEUS_START_TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn promtool_checks_and_unit_tests_the_alert_rules() {
    require_tool("promtool");
    let rules = deploy_dir().join("prometheus");
    let checked = run_ok(
        Command::new("promtool")
            .args(["check", "rules", "alerts.yml"])
            .current_dir(&rules),
    );
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = run_ok(
        Command::new("promtool")
            .args(["test", "rules", "alerts.test.yml"])
            .current_dir(&rules),
    );
    assert!(tested.contains("SUCCESS"), "{tested}");
    let config = run_ok(
        Command::new("promtool")
            .args(["check", "config", "--syntax-only", "prometheus.yml"])
            .current_dir(&rules),
    );
    assert!(config.contains("SUCCESS"), "{config}");
}

#[test]
fn prometheus_fires_the_heartbeat_alert_on_frozen_stream_threads_and_the_down_alert_on_a_stopped_agent()
 {
    require_tool("prometheus");
    docker::require_daemon();
    let loggen = docker::loggen_image();
    let label = unique_label("deploy-alerts");
    let include = format!("log-capturer-deploy={label}");
    let data = tempfile::tempdir().expect("temp dir");
    let capturer = Capturer::start(
        data.path(),
        &[
            "--include-label",
            &include,
            "--heartbeat-interval",
            "1s",
            "--task-timeout",
            "10s",
        ],
    );
    let _generator = Container::run(&[
        "--label", &include, loggen, "--tag", "alerts", "--lines", "0", "--rate", "10",
    ]);
    capturer.wait_health(
        Duration::from_secs(30),
        "one running container task",
        |health| container_tasks(health, "running").len() == 1,
    );

    let work = tempfile::tempdir().expect("temp dir");
    let prometheus = Prometheus::start(work.path(), capturer.health_addr());
    let describe = || {
        format!(
            "alerts: {:?}\nagent log:\n{}",
            prometheus.active_alerts(),
            capturer.log_text()
        )
    };

    // Healthy: the agent is scraped, the staleness expression has a value, and for several
    // evaluations neither alert is even pending.
    wait_for(
        ALERT_TIMEOUT,
        "a scraped agent with a heartbeat gauge",
        || {
            let up = prometheus.query(r#"up{job="log-capturer"} == 1"#);
            let staleness = prometheus.query(r#"time() - task_last_heartbeat{type="container"}"#);
            (!up.is_empty() && !staleness.is_empty()).then_some(())
        },
        describe,
    );
    let start = prometheus.rule_evaluations();
    wait_for(
        ALERT_TIMEOUT,
        "quiet evaluations of a healthy agent",
        || {
            let active = prometheus.active_alerts();
            assert!(
                !active.iter().any(|(name, _)| name == STALE || name == DOWN),
                "an alert is active while the agent is healthy: {active:?}\nagent log:\n{}",
                capturer.log_text()
            );
            (prometheus.rule_evaluations() >= start + QUIET_EVALUATIONS).then_some(())
        },
        describe,
    );

    // A hung task: freeze the stream-worker threads. The agent keeps serving /metrics.
    let freeze = ThreadFreeze::stream_workers(capturer.pid());
    wait_for(
        ALERT_TIMEOUT,
        "the heartbeat alert firing",
        || prometheus.firing(STALE).then_some(()),
        describe,
    );
    assert!(!prometheus.firing(DOWN), "the agent is up but {DOWN} fires");
    // At task_timeout the supervisor declares the frozen task dead and counts it.
    wait_for(
        ALERT_TIMEOUT,
        "the task failures alert firing",
        || prometheus.firing(FAILURES).then_some(()),
        describe,
    );
    drop(freeze);
    wait_for(
        ALERT_TIMEOUT,
        "the heartbeat alert resolving once the threads run again",
        || {
            let active = prometheus.active_alerts();
            (!active.iter().any(|(name, _)| name == STALE)).then_some(())
        },
        describe,
    );

    // A hung agent: stop the whole process; the scrape fails.
    capturer.signal("STOP");
    wait_for(
        ALERT_TIMEOUT,
        "the down alert firing",
        || prometheus.firing(DOWN).then_some(()),
        describe,
    );
    // A failed scrape marks the agent's series stale, so the heartbeat rule has nothing to say.
    assert!(
        !prometheus.firing(STALE),
        "{STALE} fires for an agent that is down"
    );
    capturer.signal("CONT");
}

/// A Prometheus server on loopback, with a 1 s scrape and evaluation interval, scraping one
/// agent and evaluating deploy/prometheus/alerts.yml (heartbeat threshold lowered, `for` 0s).
/// Killed when dropped.
#[derive(Debug)]
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    log: std::path::PathBuf,
}

impl Prometheus {
    fn start(work: &Path, agent: SocketAddr) -> Prometheus {
        let shipped = std::fs::read_to_string(deploy_dir().join("prometheus/alerts.yml"))
            .expect("read alerts.yml");
        assert_eq!(
            shipped.matches(HEARTBEAT_RULE).count(),
            1,
            "alerts.yml no longer has the heartbeat rule `{HEARTBEAT_RULE}`; update this test"
        );
        let rules: String = shipped
            .replace(HEARTBEAT_RULE, HEARTBEAT_RULE_FAST)
            .lines()
            .map(|line| {
                if line.trim_start().starts_with("for:") {
                    let indent = &line[..line.len() - line.trim_start().len()];
                    format!("{indent}for: 0s\n")
                } else {
                    format!("{line}\n")
                }
            })
            .collect();
        let rules_path = work.join("alerts.yml");
        std::fs::write(&rules_path, rules).expect("write the rules");
        let config_path = work.join("prometheus.yml");
        std::fs::write(
            &config_path,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {}\n\
                 scrape_configs:\n  - job_name: log-capturer\n    static_configs:\n      - targets: [\"{agent}\"]\n",
                rules_path.display()
            ),
        )
        .expect("write the config");
        let log = work.join("prometheus.log");
        // Prometheus cannot report an ephemeral port it bound, so take a free one and hand it over.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                work.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("create the log"))
            .spawn()
            .expect("start prometheus");
        let prometheus = Prometheus { child, addr, log };
        wait_for(
            PROMETHEUS_START_TIMEOUT,
            "Prometheus to be ready",
            || try_get(addr, "/-/ready").filter(|(status, _)| *status == 200),
            || prometheus.log_text(),
        );
        prometheus
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// An instant query's result vector.
    fn query(&self, promql: &str) -> Vec<serde_json::Value> {
        let path = format!("/api/v1/query?query={}", url_encode(promql));
        let (status, body) = try_get(self.addr, &path)
            .unwrap_or_else(|| panic!("Prometheus does not answer; log:\n{}", self.log_text()));
        assert_eq!(status, 200, "query {promql}: {body}");
        let answer: serde_json::Value = serde_json::from_str(&body).expect("query answer is JSON");
        answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Active alerts as (name, state), state being `pending` or `firing`.
    fn active_alerts(&self) -> Vec<(String, String)> {
        self.query("ALERTS")
            .iter()
            .map(|sample| {
                let metric = &sample["metric"];
                (
                    metric["alertname"].as_str().unwrap_or_default().to_owned(),
                    metric["alertstate"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    fn firing(&self, alert: &str) -> bool {
        self.active_alerts()
            .iter()
            .any(|(name, state)| name == alert && state == "firing")
    }

    /// How many times the rule group has been evaluated (from Prometheus's own /metrics).
    fn rule_evaluations(&self) -> f64 {
        let (_, body) = try_get(self.addr, "/metrics").expect("Prometheus /metrics");
        body.lines()
            .filter(|line| line.starts_with("prometheus_rule_group_iterations_total{"))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Stops some threads of a process (and only those) until dropped, via ptrace from a perl
/// helper: `PTRACE_SEIZE` then `PTRACE_INTERRUPT` each thread (x86_64 syscall 101). The helper
/// holds them until its stdin closes; when it exits the kernel detaches and resumes them.
#[derive(Debug)]
struct ThreadFreeze {
    helper: Child,
    stdin: Option<ChildStdin>,
}

const FREEZE_HELPER: &str = r#"
use strict; use warnings;
$| = 1;
for my $tid (@ARGV) {
    syscall(101, 0x4206, $tid + 0, 0, 0) == 0 or die "PTRACE_SEIZE $tid: $!\n";
    syscall(101, 0x4207, $tid + 0, 0, 0) == 0 or die "PTRACE_INTERRUPT $tid: $!\n";
}
print "frozen\n";
my $ignored = <STDIN>;
"#;

impl ThreadFreeze {
    /// Freezes every `docker-stream-N` thread of `pid`.
    fn stream_workers(pid: u32) -> ThreadFreeze {
        let tasks = format!("/proc/{pid}/task");
        let threads: Vec<String> = std::fs::read_dir(&tasks)
            .unwrap_or_else(|e| panic!("{tasks}: {e}"))
            .filter_map(|entry| {
                let tid = entry.ok()?.file_name().to_string_lossy().into_owned();
                let comm = std::fs::read_to_string(format!("{tasks}/{tid}/comm")).ok()?;
                comm.starts_with("docker-stream-").then_some(tid)
            })
            .collect();
        assert!(
            !threads.is_empty(),
            "the agent has no docker-stream threads"
        );
        let mut helper = Command::new("perl")
            .args(["-e", FREEZE_HELPER])
            .args(&threads)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run perl");
        let stdin = helper.stdin.take();
        let mut said = String::new();
        BufReader::new(helper.stdout.take().expect("piped stdout"))
            .read_line(&mut said)
            .expect("read the helper's answer");
        assert_eq!(said.trim(), "frozen", "the ptrace helper failed");
        // PTRACE_INTERRUPT is asynchronous: wait until every thread is in its ptrace stop.
        wait_for(
            Duration::from_secs(10),
            "the stream threads to stop",
            || {
                threads
                    .iter()
                    .all(|tid| {
                        std::fs::read_to_string(format!("{tasks}/{tid}/status"))
                            .is_ok_and(|status| status.contains("State:\tt"))
                    })
                    .then_some(())
            },
            String::new,
        );
        ThreadFreeze { helper, stdin }
    }
}

impl Drop for ThreadFreeze {
    fn drop(&mut self) {
        // Closing stdin ends the helper, which detaches (and so resumes) the threads.
        drop(self.stdin.take());
        let _ = self.helper.wait();
    }
}
