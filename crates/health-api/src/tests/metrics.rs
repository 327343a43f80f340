//! `/metrics`: the registered metrics, the process and runtime gauges.

use http::{Method, StatusCode};

use super::{FakeStatus, body_text, recorder, sample};
use crate::process_metrics::parse_vm_rss;
use crate::{HealthApi, HealthConfig, Readiness};

#[tokio::test]
async fn metrics_renders_process_and_runtime_gauges_and_registered_metrics() {
    let recorder = recorder();
    let api = HealthApi::new(
        HealthConfig::default(),
        FakeStatus::healthy(),
        Readiness::default(),
        recorder.handle(),
    );
    // A task that stays alive until the scrape is over, so the runtime has one to count.
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let waiting = tokio::spawn(async move {
        let _ = release_rx.await;
    });

    let response = metrics::with_local_recorder(&recorder, || {
        metrics::counter!("test_scrapes_total").increment(3);
        api.handle(&Method::GET, "/metrics")
    });
    release_tx.send(()).unwrap();
    waiting.await.unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[http::header::CONTENT_TYPE],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = body_text(&response);
    assert_eq!(sample(text, "test_scrapes_total"), Some(3.0), "{text}");
    assert!(sample(text, "tokio_alive_tasks").unwrap() >= 1.0, "{text}");
    if cfg!(target_os = "linux") {
        // The test binary has at least stdin, stdout and stderr open and some megabytes mapped.
        assert!(sample(text, "process_open_fds").unwrap() >= 3.0, "{text}");
        assert!(
            sample(text, "process_resident_memory_bytes").unwrap() > 1_000_000.0,
            "{text}"
        );
    }
}

#[test]
fn registered_runtimes_add_their_alive_tasks() {
    let main = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let extra = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // Tasks spawned on a runtime nobody drives stay alive (queued) until it is dropped.
    for _ in 0..3 {
        drop(extra.spawn(std::future::pending::<()>()));
    }
    let _entered = main.enter();
    let recorder = recorder();
    let api = || {
        HealthApi::new(
            HealthConfig::default(),
            FakeStatus::healthy(),
            Readiness::default(),
            recorder.handle(),
        )
    };
    let main_only = api();
    let mut both = api();
    both.register_runtime(extra.handle().clone());

    let scrape = |api: &HealthApi| {
        metrics::with_local_recorder(&recorder, || {
            let response = api.handle(&Method::GET, "/metrics");
            sample(body_text(&response), "tokio_alive_tasks").unwrap()
        })
    };
    assert_eq!(scrape(&both) - scrape(&main_only), 3.0);
}

#[test]
fn vm_rss_is_parsed_in_bytes() {
    let status = "Name:\tlog-capturer\nVmPeak:\t  9000 kB\nVmRSS:\t    5120 kB\nThreads:\t4\n";
    assert_eq!(parse_vm_rss(status), Some(5120 * 1024));
    assert_eq!(parse_vm_rss("Name:\tx\n"), None);
    assert_eq!(parse_vm_rss("VmRSS:\tlots kB\n"), None);
}
