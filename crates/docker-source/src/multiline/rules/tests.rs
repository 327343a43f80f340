//! Unit tests of rule selection (label, configured matches) and validation.

use std::time::Duration;

use super::{MULTILINE_LABEL, MultilineConfig, MultilineRules};
use crate::{
    Error,
    multiline::{
        MultilinePreset,
        tests::{INACTIVITY, container},
    },
};

fn rule_config(name: &str, edit: impl FnOnce(&mut MultilineConfig)) -> MultilineConfig {
    let mut config = MultilineConfig {
        name: name.to_owned(),
        preset: Some(MultilinePreset::Java),
        ..MultilineConfig::default()
    };
    edit(&mut config);
    config
}

#[test]
fn the_label_wins_over_configured_matches_and_names_rules_or_presets() {
    let rules = MultilineRules::new(
        &[
            rule_config("by-label-only", |c| c.preset = Some(MultilinePreset::Go)),
            rule_config("orders", |c| {
                c.match_images = vec!["*/shop/orders:*".to_owned()];
                c.match_labels = vec!["team=shop".to_owned()];
            }),
            rule_config("web", |c| {
                c.preset = Some(MultilinePreset::Python);
                c.match_names = vec!["web-*".to_owned()];
            }),
        ],
        INACTIVITY,
    )
    .unwrap();
    let name = |labels: &[(&str, &str)]| {
        rules
            .for_container(&container(labels))
            .map(|rule| rule.name.clone())
    };
    assert_eq!(
        name(&[("team", "shop")]).as_deref(),
        Some("orders"),
        "first match wins"
    );
    assert_eq!(name(&[]).as_deref(), Some("web"));
    assert_eq!(
        name(&[(MULTILINE_LABEL, "by-label-only")]).as_deref(),
        Some("by-label-only")
    );
    assert_eq!(
        name(&[("team", "shop"), (MULTILINE_LABEL, "python")]).as_deref(),
        Some("python")
    );
    assert_eq!(name(&[("team", "shop"), (MULTILINE_LABEL, "off")]), None);
    assert_eq!(
        name(&[(MULTILINE_LABEL, "cobol")]),
        None,
        "unknown: lines pass through"
    );
    assert_eq!(name(&[(MULTILINE_LABEL, "cobol")]), None);
    assert!(
        !rules.first_warning("cobol"),
        "the unknown name was warned about once"
    );
}

#[test]
fn a_rule_named_like_a_preset_is_what_the_label_gets() {
    let rules =
        MultilineRules::new(&[rule_config("java", |c| c.max_lines = 7)], INACTIVITY).unwrap();
    let rule = rules
        .for_container(&container(&[(MULTILINE_LABEL, "java")]))
        .unwrap();
    assert_eq!(rule.max_lines, 7);
}

fn validation_error(configs: Vec<MultilineConfig>) -> String {
    let config = crate::DockerConfig {
        multiline: configs,
        ..crate::DockerConfig::default()
    };
    let error = config.validate(Duration::from_secs(300)).unwrap_err();
    assert!(matches!(error, Error::Multiline { .. }), "{error:?}");
    capture_core::ErrorChain(&error).to_string()
}

#[test]
fn invalid_rules_are_refused_with_the_key_they_are_about() {
    let ok = || rule_config("ok", |_| {});
    let bad_regex = validation_error(vec![
        ok(),
        rule_config("bad", |c| {
            c.preset = None;
            c.start_pattern = Some("^(unclosed".to_owned());
        }),
    ]);
    assert!(bad_regex.starts_with("invalid setting docker.multiline[1].start_pattern: \"^(unclosed\" is not a valid regular expression"), "{bad_regex}");
    assert!(
        bad_regex.contains("unclosed group"),
        "the regex crate's reason: {bad_regex}"
    );
    for (edit, key) in [
        (
            Box::new(|c: &mut MultilineConfig| c.start_pattern = Some("x".to_owned()))
                as Box<dyn Fn(&mut MultilineConfig)>,
            "preset",
        ),
        (
            Box::new(|c: &mut MultilineConfig| c.preset = None),
            "start_pattern",
        ),
        (
            Box::new(|c: &mut MultilineConfig| {
                c.preset = None;
                c.continue_pattern = Some(String::new());
            }),
            "continue_pattern",
        ),
        (
            Box::new(|c: &mut MultilineConfig| c.max_lines = 1),
            "max_lines",
        ),
        (
            Box::new(|c: &mut MultilineConfig| c.max_bytes = 0),
            "max_bytes",
        ),
        (
            Box::new(|c: &mut MultilineConfig| c.flush_timeout = Duration::from_secs(60)),
            "flush_timeout",
        ),
        (
            Box::new(|c: &mut MultilineConfig| c.flush_timeout = Duration::ZERO),
            "flush_timeout",
        ),
        (
            Box::new(|c: &mut MultilineConfig| c.name = "ok".to_owned()),
            "name",
        ),
        (
            Box::new(|c: &mut MultilineConfig| c.name = String::new()),
            "name",
        ),
        (
            Box::new(|c: &mut MultilineConfig| c.name = "off".to_owned()),
            "name",
        ),
        (
            Box::new(|c: &mut MultilineConfig| c.match_names = vec!["[".to_owned()]),
            "match_names",
        ),
        (
            Box::new(|c: &mut MultilineConfig| c.match_labels = vec!["=x".to_owned()]),
            "match_labels",
        ),
    ] {
        let mut config = rule_config("second", |_| {});
        edit(&mut config);
        let message = validation_error(vec![ok(), config]);
        assert!(
            message.starts_with(&format!("invalid setting docker.multiline[1].{key}: ")),
            "{key}: {message}"
        );
    }
}
