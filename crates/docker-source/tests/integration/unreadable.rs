//! Containers whose log driver cannot be read by design are listed, never tasks; a driver that
//! only sends is still captured while Docker's dual logging cache is on.

use capture_core::status::{UnreadableContainer, UnreadableReason};
use test_support::docker::Container;
use tokio::sync::watch;

use crate::harness::{self, Harness, Sink, WAIT, config, counter, loggen, unique};

/// Waits (bounded by [`WAIT`]) until the unreadable list satisfies `condition`.
async fn wait_list(
    unreadable_rx: &watch::Receiver<Vec<UnreadableContainer>>,
    what: &str,
    condition: impl Fn(&[UnreadableContainer]) -> bool,
) -> Vec<UnreadableContainer> {
    let mut waiting_rx = unreadable_rx.clone();
    let waited = tokio::time::timeout(WAIT, waiting_rx.wait_for(|list| condition(list))).await;
    match waited {
        Ok(Ok(list)) => list.clone(),
        _ => panic!(
            "timed out waiting for the unreadable list: {what}; it is {:?}",
            *unreadable_rx.borrow()
        ),
    }
}

fn entry<'a>(list: &'a [UnreadableContainer], id: &str) -> &'a UnreadableContainer {
    list.iter()
        .find(|entry| entry.id == id)
        .unwrap_or_else(|| panic!("{} is not listed: {list:?}", &id[..12]))
}

/// The containers of the test, one per kind of log driver.
struct Drivers {
    /// Logs nowhere (`--log-driver none`).
    none: Container,
    /// Sends to syslog with Docker's dual logging cache disabled.
    uncached: Container,
    /// Sends to syslog, read through the cache.
    cached: Container,
    /// A `none` container the filters exclude: not listed.
    _other: Container,
}

impl Drivers {
    fn start(label: &str, syslog_address: &str, image: &str) -> Drivers {
        let hold = ["--lines", "20", "--hold-secs", "300"];
        let none = loggen(label, &["--network", "none", "--log-driver", "none"], &hold);
        let syslog_driver = ["--network", "none", "--log-driver", "syslog", "--log-opt"];
        let uncached = loggen(
            label,
            &[
                &syslog_driver[..],
                &[syslog_address, "--log-opt", "cache-disabled=true"],
            ]
            .concat(),
            &hold,
        );
        let cached = loggen(
            label,
            &[&syslog_driver[..], &[syslog_address]].concat(),
            &["--tag", "cached", "--lines", "20", "--hold-secs", "300"],
        );
        let _other = Container::run(&[
            "--network",
            "none",
            "--log-driver",
            "none",
            image,
            "--hold-secs",
            "300",
        ]);
        Drivers {
            none,
            uncached,
            cached,
            _other,
        }
    }
}

/// Exactly the two unreadable containers the filters select, with their driver and reason.
fn assert_listed(list: &[UnreadableContainer], none: &Container, uncached: &Container) {
    assert_eq!(list.len(), 2, "only the filtered containers: {list:?}");
    let listed = entry(list, none.id());
    assert_eq!(
        (listed.driver.as_str(), listed.reason),
        ("none", UnreadableReason::LogDriverNone)
    );
    assert!(listed.name.starts_with("lc-ds-"), "{listed:?}");
    let listed = entry(list, uncached.id());
    assert_eq!(
        (listed.driver.as_str(), listed.reason),
        ("syslog", UnreadableReason::DualLoggingDisabled)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_log_drivers_are_listed_not_tasks_and_leave_the_list_with_their_container() {
    let _shared = harness::process_lock().read().await;
    let image = test_support::docker::loggen_image();
    // The syslog driver sends here. A bound socket takes every datagram, so no ICMP "port
    // unreachable" makes the driver refuse a line (Docker caches only what the driver took).
    let syslog = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let syslog_address = format!("syslog-address=udp://{}", syslog.local_addr().unwrap());
    let label = unique("unreadable");
    let dir = tempfile::tempdir().unwrap();
    let harness = Harness::start(config(&label), dir.path(), Sink::default());

    let containers = Drivers::start(&label, &syslog_address, image);
    let Drivers {
        none,
        uncached,
        cached,
        ..
    } = &containers;
    harness
        .sink
        .collected
        .lock()
        .unwrap()
        .checker
        .expect(cached.id(), "cached", 20);

    let list = wait_list(
        &harness.unreadable_rx,
        "both unreadable containers",
        |list| list.len() >= 2,
    )
    .await;
    assert_listed(&list, none, uncached);

    // The cached syslog container is read through Docker's dual logging cache.
    harness
        .sink
        .wait_until("every line of the cached syslog container", |c| {
            c.count(cached.id()) >= 20
        })
        .await;
    harness.sink.with(|c| c.report().assert_perfect());

    // Neither unreadable container is a task, and nothing failed.
    assert_eq!(harness.task_state(none.id()), None);
    assert_eq!(harness.task_state(uncached.id()), None);
    assert_eq!(
        counter("log_capturer_containers_unreadable_total", None),
        0,
        "no stream was tried and refused"
    );
    assert_eq!(counter("task_failures_total", None), 0);

    // Removed, it leaves the list.
    let none_id = none.id().to_owned();
    let Drivers { none, .. } = containers;
    none.remove();
    wait_list(
        &harness.unreadable_rx,
        "the removed container to leave",
        |list| list.iter().all(|entry| entry.id != none_id) && list.len() == 1,
    )
    .await;

    harness.stop().await;
}
