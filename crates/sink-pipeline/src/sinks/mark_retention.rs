//! How long the file sink remembers the high-water marks of a container it no longer hears from.
//!
//! The sink keeps one mark per container and stream, so on a host that churns containers (CI
//! jobs, cron, `--rm` one-shots) the map would grow by one entry per container ever seen. The sink
//! only sees batches, so a container is *gone* when no batch of it arrived for
//! `high_water_retention`; its marks are then forgotten.
//!
//! What forgetting costs: a mark only matters when lines the file already holds are sent again.
//! After an agent restart the marks are recovered from the files themselves, so a restart is not
//! affected. Within one run the source resumes from its own cursor and sends a line again only
//! around a reopen of that container's stream, which follows activity by seconds, not by the
//! retention window. So only a replay of a container that was silent for the whole window (which
//! the source does not produce) could be written twice.

use std::{collections::HashMap, time::Duration};

use capture_core::ContainerId;
use tokio::time::Instant;

/// A sweep runs at most this often relative to the window, so entries outlive it by at most a
/// quarter and the cost of a sweep is spread over many deliveries.
const SWEEPS_PER_WINDOW: u32 = 4;

/// When each container's marks were last used, and when to sweep next.
#[derive(Debug)]
pub(crate) struct MarkRetention {
    window: Duration,
    last_seen: HashMap<ContainerId, Instant>,
    next_sweep: Instant,
}

impl MarkRetention {
    pub(crate) fn new(window: Duration, now: Instant) -> MarkRetention {
        MarkRetention {
            window,
            last_seen: HashMap::new(),
            next_sweep: now + window / SWEEPS_PER_WINDOW,
        }
    }

    /// A batch of `id` arrived (or its marks were recovered) at `now`.
    pub(crate) fn seen(&mut self, id: &ContainerId, now: Instant) {
        match self.last_seen.get_mut(id) {
            Some(last) => *last = now,
            None => {
                self.last_seen.insert(id.clone(), now);
            }
        }
    }

    /// Removes from `marks` every container not seen for the window (at most once per quarter
    /// window); returns how many were removed.
    pub(crate) fn sweep<V>(&mut self, now: Instant, marks: &mut HashMap<ContainerId, V>) -> usize {
        if now < self.next_sweep {
            return 0;
        }
        self.next_sweep = now + self.window / SWEEPS_PER_WINDOW;
        // A mark with no time (never seen) is treated as seen now, so nothing is lost early.
        for id in marks.keys() {
            if !self.last_seen.contains_key(id) {
                self.last_seen.insert(id.clone(), now);
            }
        }
        let window = self.window;
        self.last_seen
            .retain(|_, last| now.saturating_duration_since(*last) < window);
        let before = marks.len();
        marks.retain(|id, _| self.last_seen.contains_key(id));
        shrink(marks);
        shrink(&mut self.last_seen);
        before - marks.len()
    }

    /// Containers whose time is tracked.
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.last_seen.len()
    }
}

/// Gives memory back once a map is mostly empty: a `HashMap` never shrinks by itself.
fn shrink<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>) {
    if map.capacity() > 64 && map.len() < map.capacity() / 4 {
        map.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ContainerId {
        ContainerId::new(format!("{n:02x}").repeat(32)).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn containers_silent_for_the_window_are_forgotten_and_active_ones_kept() {
        let window = Duration::from_secs(3600);
        let start = Instant::now();
        let mut retention = MarkRetention::new(window, start);
        let mut marks: HashMap<ContainerId, u32> = HashMap::new();
        for n in 0..3 {
            marks.insert(id(n), u32::from(n));
            retention.seen(&id(n), start);
        }
        // Container 0 keeps writing; 1 and 2 stop.
        for minute in 1..=70 {
            tokio::time::advance(Duration::from_secs(60)).await;
            retention.seen(&id(0), Instant::now());
            let removed = retention.sweep(Instant::now(), &mut marks);
            let silent_for = Duration::from_secs(60 * minute);
            if silent_for < window {
                assert_eq!(removed, 0, "minute {minute}: forgotten too early");
            }
        }
        assert_eq!(marks.keys().collect::<Vec<_>>(), [&id(0)]);
        assert_eq!(retention.tracked(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_container_is_forgotten_within_a_quarter_window_after_the_window() {
        let window = Duration::from_secs(40);
        let mut retention = MarkRetention::new(window, Instant::now());
        let mut marks = HashMap::from([(id(1), ())]);
        retention.seen(&id(1), Instant::now());
        let started = Instant::now();
        let mut forgotten_after = None;
        for _ in 0..200 {
            tokio::time::advance(Duration::from_secs(1)).await;
            if retention.sweep(Instant::now(), &mut marks) == 1 {
                forgotten_after = Some(started.elapsed());
                break;
            }
        }
        let after = forgotten_after.expect("never forgotten");
        assert!(after >= window, "{after:?}");
        assert!(after <= window + window / SWEEPS_PER_WINDOW, "{after:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn marks_without_a_time_get_one_and_memory_is_given_back() {
        let window = Duration::from_secs(8);
        let mut retention = MarkRetention::new(window, Instant::now());
        let mut marks: HashMap<ContainerId, ()> = (0..=255).map(|n| (id(n), ())).collect();
        // Recovered marks that were never `seen` are kept for a full window from the first sweep.
        tokio::time::advance(window / 2).await;
        assert_eq!(retention.sweep(Instant::now(), &mut marks), 0);
        assert_eq!(retention.tracked(), 256);
        tokio::time::advance(window).await;
        assert_eq!(retention.sweep(Instant::now(), &mut marks), 256);
        assert!(marks.is_empty() && retention.tracked() == 0);
        assert!(marks.capacity() < 64, "capacity {}", marks.capacity());
    }

    mod in_the_file_sink {
        use std::sync::Arc;

        use capture_core::{ContainerInfo, EventBatch, EventBatchBuilder, LogStream, Position};

        use super::*;
        use crate::{config::FileSinkConfig, sink::Sink, sinks::file::FileSink};

        fn batch(container: u8, timestamp: i64) -> EventBatch {
            let info = ContainerInfo::new(id(container), format!("job-{container}"), "busybox");
            let mut builder = EventBatchBuilder::new(Arc::new(info));
            let message = format!("line {timestamp}");
            builder.push(
                LogStream::Stdout,
                Position::new(timestamp, 0),
                message.as_bytes(),
            );
            builder.finish()
        }

        fn records(config: &FileSinkConfig) -> usize {
            std::fs::read_to_string(&config.path)
                .unwrap()
                .lines()
                .count()
        }

        #[tokio::test(start_paused = true)]
        async fn marks_of_gone_containers_are_forgotten_and_come_back_from_the_file_at_restart() {
            let dir = tempfile::tempdir().unwrap();
            let config = FileSinkConfig {
                high_water_retention: Duration::from_secs(60),
                ..FileSinkConfig::default_for(dir.path())
            };
            let mut sink = FileSink::open(&config).unwrap();
            // 100 short-lived containers write one line each; container 0 keeps writing.
            for container in 0..100 {
                sink.deliver(&[batch(container, 1_000)]).await.unwrap();
            }
            assert_eq!(sink.containers_with_marks(), 100);
            for tick in 1..=8 {
                tokio::time::advance(Duration::from_secs(20)).await;
                sink.deliver(&[batch(0, 1_000 + tick)]).await.unwrap();
            }
            assert_eq!(sink.containers_with_marks(), 1, "only the active container");
            assert_eq!(records(&config), 108);

            // Within this run a replay of a forgotten container would be written again: the
            // documented cost, which the source does not incur (it replays only around a reopen
            // of a stream that is active).
            sink.deliver(&[batch(5, 1_000)]).await.unwrap();
            assert_eq!(records(&config), 109);

            // After a restart the marks come back from the file, and replays are skipped.
            drop(sink);
            let mut sink = FileSink::open(&config).unwrap();
            assert_eq!(sink.containers_with_marks(), 100);
            for container in [0, 5, 42] {
                sink.deliver(&[batch(container, 1_000)]).await.unwrap();
            }
            assert_eq!(records(&config), 109, "replays after a restart are skipped");
        }
    }
}
