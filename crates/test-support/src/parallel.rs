//! Work on many items at once, on scoped threads (the harness runs threads, not a runtime).

use anyhow::{Result, bail};

/// Runs `work` on every item at once, each on its own scoped thread, and returns the results in
/// the items' order. `what` names the work in the error if a thread panics.
pub fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    what: &str,
    work: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    std::thread::scope(|scope| {
        let work = &work;
        let handles: Vec<_> = items
            .iter()
            .map(|item| scope.spawn(move || work(item)))
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap_or_else(|_| bail!("{what} panicked")))
            .collect()
    })
}
