//! Resuming a delivery that an HTTP sink split into several requests: the pipeline passes the
//! same batches again after a failure, and the sink skips the requests already taken.

use std::hash::{DefaultHasher, Hash, Hasher};

use capture_core::EventBatch;

use crate::sink::SinkError;

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

/// How far the current delivery got through its requests, kept across a failure so the retry
/// of the same delivery skips the requests the receiver already took (`E`: the sink's refusal
/// error).
#[derive(Debug)]
pub(crate) struct Progress<E> {
    current: Option<Delivery<E>>,
}

#[derive(Debug)]
struct Delivery<E> {
    fingerprint: u64,
    /// Requests the receiver accepted or refused for their content: not to be sent again.
    done_requests: usize,
    refused_requests: usize,
    first_refusal: Option<E>,
}

impl<E> Default for Progress<E> {
    fn default() -> Self {
        Progress { current: None }
    }
}

impl<E> Progress<E> {
    /// Starts `batches`, or resumes them if they are the delivery that failed last: how many
    /// of its requests are done already (to skip).
    pub(crate) fn start(&mut self, batches: &[EventBatch]) -> usize {
        let fingerprint = fingerprint(batches);
        let delivery = match self.current.take() {
            Some(delivery) if delivery.fingerprint == fingerprint => delivery,
            _ => Delivery {
                fingerprint,
                done_requests: 0,
                refused_requests: 0,
                first_refusal: None,
            },
        };
        let done = delivery.done_requests;
        self.current = Some(delivery);
        done
    }

    /// The outcome of the next request: taken (`Ok(None)`), refused for its content, or
    /// failed. A failure is returned, and the progress kept for the retry.
    pub(crate) fn sent(&mut self, outcome: Result<Option<E>, SinkError>) -> Result<(), SinkError> {
        let refusal = outcome?;
        if let Some(delivery) = &mut self.current {
            delivery.done_requests += 1;
            if let Some(refusal) = refusal {
                delivery.refused_requests += 1;
                delivery.first_refusal.get_or_insert(refusal);
            }
        }
        Ok(())
    }

    /// Every request is done: the delivery's result, `rejected(refused requests, first
    /// refusal)` if the receiver refused any.
    pub(crate) fn finish(
        &mut self,
        rejected: impl FnOnce(usize, E) -> SinkError,
    ) -> Result<(), SinkError> {
        match self.current.take() {
            Some(Delivery {
                refused_requests,
                first_refusal: Some(first),
                ..
            }) => Err(rejected(refused_requests, first)),
            _ => Ok(()),
        }
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

    fn refused(count: usize, first: &str) -> SinkError {
        SinkError::permanent(format!("{count} refused, first: {first}"))
    }

    #[test]
    fn fingerprints_tell_deliveries_apart() {
        assert_eq!(fingerprint(&delivery(1)), fingerprint(&delivery(1)));
        assert_ne!(fingerprint(&delivery(1)), fingerprint(&delivery(3)));
    }

    #[test]
    fn a_retry_of_the_same_delivery_resumes_and_another_starts_afresh() {
        let mut progress = Progress::<&str>::default();
        assert_eq!(progress.start(&delivery(1)), 0);
        progress.sent(Ok(None)).unwrap();
        progress.sent(Ok(Some("too old"))).unwrap();
        let failed = progress.sent(Err(SinkError::permanent("connection reset")));
        assert!(failed.is_err());
        // The retry skips the two requests done, and still reports the refusal at the end.
        assert_eq!(progress.start(&delivery(1)), 2);
        progress.sent(Ok(Some("later"))).unwrap();
        let error = progress.finish(refused).unwrap_err();
        assert!(
            format!("{error:?}").contains("2 refused, first: too old"),
            "{error:?}"
        );
        // Finished: the same batches again are a new delivery, as is another one.
        assert_eq!(progress.start(&delivery(1)), 0);
        progress.sent(Ok(None)).unwrap();
        let _ = progress.sent(Err(SinkError::permanent("down")));
        assert_eq!(progress.start(&delivery(3)), 0);
        assert!(progress.finish(refused).is_ok());
    }
}
