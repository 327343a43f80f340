//! Resuming a delivery that an HTTP sink split into several requests: the pipeline passes the
//! same batches again after a failure, and the sink skips the requests already taken.

use std::hash::{DefaultHasher, Hash, Hasher};

use capture_core::EventBatch;

/// Identifies a delivery cheaply: the containers, line counts, sizes and first and last
/// positions of its batches. Two different deliveries agreeing on all of it would have to
/// share every container and boundary line, which consecutive deliveries never do.
pub(crate) fn fingerprint(batches: &[EventBatch]) -> u64 {
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
