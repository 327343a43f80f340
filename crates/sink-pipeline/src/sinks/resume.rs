//! Resuming a delivery that an HTTP sink split into several requests: the pipeline passes the
//! same batches again after a failure, and the sink skips the requests already taken.

use std::hash::{DefaultHasher, Hash, Hasher};

use capture_core::EventBatch;

/// Identifies a delivery cheaply: the containers, line counts, sizes and first and last
/// positions of its batches. Two different deliveries agreeing on all of it would have to
/// share every container and boundary line, which consecutive deliveries never do.
fn fingerprint(batches: &[EventBatch]) -> u64 {
    let mut hasher = DefaultHasher::new();
    batches.len().hash(&mut hasher);
    for batch in batches {
        batch.container().id.hash(&mut hasher);
        batch.len().hash(&mut hasher);
        batch.message_bytes().hash(&mut hasher);
        batch.line(0).map(|line| line.position).hash(&mut hasher);
        batch
            .line(batch.len().wrapping_sub(1))
            .map(|line| line.position)
            .hash(&mut hasher);
    }
    hasher.finish()
}

/// How far a delivery got through its requests: kept when it fails, so the retry of the same
/// delivery skips the requests the receiver already took (`E`: the sink's refusal error).
#[derive(Debug)]
pub(crate) struct Progress<E> {
    fingerprint: u64,
    /// Requests the receiver accepted or refused for their content: not to be sent again.
    done_requests: usize,
    refused_requests: usize,
    first_refusal: Option<E>,
}

impl<E> Progress<E> {
    /// The progress `saved` by a failed attempt if `batches` are the same delivery again, else
    /// a fresh start.
    pub(crate) fn resume(saved: Option<Progress<E>>, batches: &[EventBatch]) -> Progress<E> {
        let fingerprint = fingerprint(batches);
        match saved {
            Some(progress) if progress.fingerprint == fingerprint => progress,
            _ => Progress {
                fingerprint,
                done_requests: 0,
                refused_requests: 0,
                first_refusal: None,
            },
        }
    }

    /// How many of the delivery's requests are done (to skip).
    pub(crate) fn done(&self) -> usize {
        self.done_requests
    }

    /// One more request is done: taken, or refused for its content (`refusal`).
    pub(crate) fn sent(&mut self, refusal: Option<E>) {
        if let Some(refusal) = refusal {
            self.refused_requests += 1;
            self.first_refusal.get_or_insert(refusal);
        }
        self.done_requests += 1;
    }

    /// Every request is done: `None` if all were taken, else how many were refused and the
    /// first refusal.
    pub(crate) fn refused(self) -> Option<(usize, E)> {
        self.first_refusal
            .map(|first| (self.refused_requests, first))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use capture_core::{ContainerId, ContainerInfo, EventBatchBuilder, LogStream, Position};

    use super::*;

    /// One batch of two lines stamped `first` and `first + 1`.
    fn delivery(first: i64) -> Vec<EventBatch> {
        let id = ContainerId::new("a".repeat(64)).unwrap();
        let mut builder = EventBatchBuilder::new(Arc::new(ContainerInfo::new(id, "web", "nginx")));
        for timestamp in [first, first + 1] {
            builder.push(LogStream::Stdout, Position::new(timestamp, 0), b"line");
        }
        vec![builder.finish()]
    }

    #[test]
    fn fingerprints_tell_deliveries_apart() {
        assert_eq!(fingerprint(&delivery(1)), fingerprint(&delivery(1)));
        assert_ne!(fingerprint(&delivery(1)), fingerprint(&delivery(3)));
    }

    #[test]
    fn a_retry_of_the_same_delivery_resumes_and_another_starts_afresh() {
        let mut progress = Progress::<&str>::resume(None, &delivery(1));
        progress.sent(None);
        progress.sent(Some("too old"));
        let resumed = Progress::resume(Some(progress), &delivery(1));
        assert_eq!(resumed.done(), 2);
        let fresh = Progress::resume(Some(resumed), &delivery(3));
        assert_eq!(fresh.done(), 0);
        assert!(fresh.refused().is_none());

        let mut progress = Progress::resume(None, &delivery(1));
        for refusal in [None, Some("first"), Some("second")] {
            progress.sent(refusal);
        }
        assert_eq!(progress.refused(), Some((2, "first")));
    }
}
