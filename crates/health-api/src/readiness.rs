//! The readiness latch behind `GET /ready`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether the agent is ready: shared by clones, set by the binary, read by `GET /ready`.
///
/// The default is *not ready*. The binary sets it once Docker is reachable and the pipeline runs,
/// and clears it when shutdown starts; the server also clears it when its own shutdown token is
/// cancelled, so `/ready` is 503 for every request answered during the drain.
#[derive(Clone, Debug, Default)]
pub struct Readiness {
    ready: Arc<AtomicBool>,
}

impl Readiness {
    /// Marks the agent ready (`true`) or not ready (`false`).
    pub fn set_ready(&self, ready: bool) {
        // Release/Acquire is enough: the flag guards no other data, it only has to become visible.
        self.ready.store(ready, Ordering::Release);
    }

    /// Whether the agent is ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}
