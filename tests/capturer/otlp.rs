//! The OTLP sink end to end: the real binary reads a real container and its lines arrive at an
//! OTLP receiver that decodes them with the published message definitions.

use std::{
    collections::BTreeSet,
    io::Write,
    time::{Duration, Instant},
};

use end_to_end::{Capturer, unique_label};
use test_support::{
    docker::{self, Container},
    receiver::{Receiver, attribute, string_value},
};

#[test]
fn a_containers_lines_arrive_at_the_otlp_receiver_with_its_resource() {
    const LINES: usize = 50;
    let mut receiver = Receiver::start(vec![]);
    let label = unique_label("otlp");
    let label_arg = format!("log-capturer-e2e={label}");
    let mut config = tempfile::NamedTempFile::new().unwrap();
    write!(
        config,
        "[[sinks]]\ntype = \"otlp\"\nendpoint = \"{}\"\ncontainer_labels = [\"log-capturer-e2e\"]\n\
         headers = {{ Authorization = \"Bearer e2e\" }}\n",
        receiver.endpoint()
    )
    .unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let _capturer = Capturer::start(
        data_dir.path(),
        &[
            "--config",
            config.path().to_str().unwrap(),
            "--include-label",
            &label_arg,
        ],
    );
    let container = Container::run(&[
        "--label",
        &label_arg,
        docker::loggen_image(),
        "--tag",
        "otlp",
        "--lines",
        &(LINES / 2).to_string(),
        "--stream",
        "both",
    ]);
    container.wait_exit();
    let expected: BTreeSet<String> = docker::logs(container.id()).into_iter().collect();
    assert_eq!(expected.len(), LINES);

    let mut bodies = BTreeSet::new();
    let started = Instant::now();
    while bodies.len() < LINES {
        let left = Duration::from_secs(60).saturating_sub(started.elapsed());
        let push = receiver
            .next_push_blocking(left)
            .unwrap_or_else(|| panic!("only {} of {LINES} lines arrived", bodies.len()));
        assert_eq!(push.path, "/v1/logs");
        assert_eq!(push.header("authorization"), Some("Bearer e2e"));
        for resource_logs in &push.logs.as_ref().unwrap().resource_logs {
            let resource = resource_logs.resource.as_ref().unwrap();
            let value = |key| attribute(&resource.attributes, key).and_then(string_value);
            assert_eq!(value("container.id"), Some(container.id()));
            assert_eq!(
                value("container.label.log-capturer-e2e"),
                Some(label.as_str())
            );
            for record in resource_logs
                .scope_logs
                .iter()
                .flat_map(|scope| &scope.log_records)
            {
                let body = record
                    .body
                    .as_ref()
                    .and_then(string_value)
                    .unwrap()
                    .to_owned();
                let stream = attribute(&record.attributes, "log.iostream").and_then(string_value);
                assert!(matches!(stream, Some("stdout" | "stderr")), "{record:?}");
                assert!(
                    record.time_unix_nano > 1_700_000_000_000_000_000,
                    "{record:?}"
                );
                assert!(bodies.insert(body.clone()), "{body} arrived twice");
            }
        }
    }
    assert_eq!(bodies, expected);
}
