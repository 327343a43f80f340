//! Reads the Prometheus text format that `/metrics` serves.
//!
//! Only what the harness needs: every sample's name, labels and value, and sums over the samples
//! of one metric whose labels match a filter. Comments (`# HELP`, `# TYPE`) are skipped.

/// One scrape of `/metrics`.
#[derive(Debug, Default, Clone)]
pub struct Metrics {
    samples: Vec<Sample>,
}

#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

impl Metrics {
    /// Parses a scrape; lines that are not samples are ignored.
    pub fn parse(text: &str) -> Metrics {
        let samples = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .filter_map(parse_sample)
            .collect();
        Metrics { samples }
    }

    /// The sum of every sample of `name` whose labels include all of `filter`; `None` when no
    /// sample matches (the metric is not exported yet, or under another name).
    pub fn sum(&self, name: &str, filter: &[(&str, &str)]) -> Option<f64> {
        let mut matched = false;
        let mut total = 0.0;
        for sample in self.samples.iter().filter(|sample| sample.name == name) {
            let labels_match = filter.iter().all(|(key, value)| {
                sample
                    .labels
                    .iter()
                    .any(|(sample_key, sample_value)| sample_key == key && sample_value == value)
            });
            if labels_match {
                matched = true;
                total += sample.value;
            }
        }
        matched.then_some(total)
    }
}

/// The value of one series (`name{labels}` exactly as rendered) in a `/metrics` body.
pub fn metric_value(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_owned();
    let (labels, rest) = if line[name_end..].starts_with('{') {
        parse_labels(&line[name_end + 1..])?
    } else {
        (Vec::new(), &line[name_end..])
    };
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// Parses `key="value",...}` and returns the labels and what follows the closing brace.
fn parse_labels(mut text: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        text = text.trim_start_matches([',', ' ']);
        if let Some(rest) = text.strip_prefix('}') {
            return Some((labels, rest));
        }
        let equals = text.find('=')?;
        let key = text[..equals].trim().to_owned();
        let mut chars = text[equals + 1..].strip_prefix('"')?.char_indices();
        let mut value = String::new();
        let end = loop {
            match chars.next()? {
                (index, '"') => break index,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, other) => value.push(other),
            }
        };
        labels.push((key, value));
        text = &text[equals + 1..][1 + end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::Metrics;

    #[test]
    fn sums_filter_on_labels() {
        let metrics = Metrics::parse(
            "# TYPE task_failures_total counter\n\
             task_failures_total{type=\"container\"} 2\n\
             task_failures_total{type=\"sink\"} 1\n\
             tokio_alive_tasks 17\n\
             odd{path=\"a \\\"quoted\\\" b\",x=\"y\"} 3 1700000000\n",
        );
        assert_eq!(metrics.sum("task_failures_total", &[]), Some(3.0));
        assert_eq!(
            metrics.sum("task_failures_total", &[("type", "container")]),
            Some(2.0)
        );
        assert_eq!(metrics.sum("tokio_alive_tasks", &[]), Some(17.0));
        assert_eq!(metrics.sum("odd", &[("x", "y")]), Some(3.0));
        assert_eq!(metrics.sum("absent", &[]), None);
    }
}
