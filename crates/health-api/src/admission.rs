//! Who gets a connection slot, so a flood of `/metrics` clients cannot starve the probes.
//!
//! A connection's path is only known once its first request head is read, so every connection is
//! accepted and first *pending*: it reads its first head (within the header read timeout) without
//! holding a slot. Pending connections are bounded; when the bound is reached, the oldest one
//! (the likeliest to be a silent client) is shed to make room. Once the head is read, the
//! connection is admitted by its path: a connection that opens with `/live` or `/ready` takes one
//! of the `probe_connections` reserved slots (or, if they are all taken, a general one); any other
//! takes one of the `max_connections` general slots. A connection that finds no slot is closed.
//! An admitted connection holds its slot for its whole life, bounded by the write timeout, the
//! header read timeout and the request cap (see `connection.rs`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// The paths the reserved probe slots are for.
const PROBE_PATHS: [&str; 2] = ["/live", "/ready"];

/// Which slots a connection may take, by the path of its first request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// The first request is `/live` or `/ready`: a reserved slot, else a general one.
    Probe,
    /// Anything else (including what is not a parsable request line): a general slot.
    General,
}

/// Whether `path` (without the query) is one the probe slots are reserved for.
pub(crate) fn is_probe_path(path: &str) -> bool {
    PROBE_PATHS.contains(&path)
}

/// Classifies a connection by the request line at the start of `head`. Only the request target's
/// path is looked at; hyper parses (and judges) the whole request afterwards.
pub(crate) fn classify(head: &[u8]) -> Class {
    let line = head.split(|byte| *byte == b'\n').next().unwrap_or_default();
    let target = line.split(|byte| *byte == b' ').nth(1).unwrap_or_default();
    let path = target
        .split(|byte| *byte == b'?')
        .next()
        .unwrap_or_default();
    match std::str::from_utf8(path) {
        Ok(path) if is_probe_path(path) => Class::Probe,
        _ => Class::General,
    }
}

/// The slots of one server: general, probe, and the bounded set of pending connections.
#[derive(Debug)]
pub(crate) struct Admission {
    general: Arc<Semaphore>,
    probes: Arc<Semaphore>,
    pending: Mutex<Pending>,
    pending_limit: usize,
}

/// Connections reading their first head, oldest first (ids only grow).
#[derive(Debug, Default)]
struct Pending {
    next_id: u64,
    waiting: BTreeMap<u64, CancellationToken>,
}

/// A pending connection's place; it leaves the pending set when dropped.
#[derive(Debug)]
pub(crate) struct PendingGuard {
    admission: Arc<Admission>,
    id: u64,
    /// Cancelled when the connection is shed to make room for a newer one.
    pub(crate) shed: CancellationToken,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.admission.lock_pending().waiting.remove(&self.id);
    }
}

impl Admission {
    /// `general` slots for any path, `probes` more for connections opening with a probe path;
    /// as many connections may be pending as there are slots.
    pub(crate) fn new(general: usize, probes: usize) -> Arc<Admission> {
        Arc::new(Admission {
            general: Arc::new(Semaphore::new(general)),
            probes: Arc::new(Semaphore::new(probes)),
            pending: Mutex::new(Pending::default()),
            pending_limit: (general + probes).max(1),
        })
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a newly accepted connection as pending. If the pending set is full, its oldest
    /// member is shed (told through its guard's `shed` token) to make room.
    pub(crate) fn enter(self: &Arc<Self>) -> PendingGuard {
        let shed = CancellationToken::new();
        let mut pending = self.lock_pending();
        if pending.waiting.len() >= self.pending_limit
            && let Some((_, oldest)) = pending.waiting.pop_first()
        {
            oldest.cancel();
        }
        let id = pending.next_id;
        pending.next_id += 1;
        pending.waiting.insert(id, shed.clone());
        drop(pending);
        PendingGuard {
            admission: Arc::clone(self),
            id,
            shed,
        }
    }

    /// A slot for a connection of `class`, held until the permit drops; `None` if there is none.
    pub(crate) fn admit(&self, class: Class) -> Option<OwnedSemaphorePermit> {
        let probe = match class {
            Class::Probe => Arc::clone(&self.probes).try_acquire_owned().ok(),
            Class::General => None,
        };
        probe.or_else(|| Arc::clone(&self.general).try_acquire_owned().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_classified_by_the_path_of_their_first_request() {
        for (head, class) in [
            (&b"GET /live HTTP/1.1\r\nHost: x\r\n\r\n"[..], Class::Probe),
            (b"HEAD /ready?verbose=1 HTTP/1.1\r\n\r\n", Class::Probe),
            (b"GET /live HTTP/1.1\n\n", Class::Probe),
            (b"GET /metrics HTTP/1.1\r\n\r\n", Class::General),
            (b"GET /health HTTP/1.1\r\n\r\n", Class::General),
            (b"GET /liveness HTTP/1.1\r\n\r\n", Class::General),
            (b"GET http://host/live HTTP/1.1\r\n\r\n", Class::General),
            (b"\xff\xfe garbage", Class::General),
            (b"", Class::General),
        ] {
            assert_eq!(classify(head), class, "{}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn probes_take_reserved_slots_then_general_ones_and_others_only_general_ones() {
        let admission = Admission::new(1, 1);
        let general = admission.admit(Class::General).expect("a general slot");
        assert!(
            admission.admit(Class::General).is_none(),
            "general slots full"
        );
        let probe = admission.admit(Class::Probe).expect("the reserved slot");
        assert!(admission.admit(Class::Probe).is_none(), "every slot taken");
        drop(general);
        let fallback = admission.admit(Class::Probe).expect("a free general slot");
        assert!(admission.admit(Class::General).is_none());
        drop(probe);
        assert!(
            admission.admit(Class::General).is_none(),
            "a freed probe slot stays reserved for probes"
        );
        drop(fallback);
        assert!(admission.admit(Class::General).is_some());
    }

    #[test]
    fn a_full_pending_set_sheds_its_oldest_member() {
        let admission = Admission::new(1, 1);
        let first = admission.enter();
        let second = admission.enter();
        assert!(!first.shed.is_cancelled() && !second.shed.is_cancelled());
        let third = admission.enter();
        assert!(first.shed.is_cancelled(), "the oldest is shed");
        assert!(!second.shed.is_cancelled() && !third.shed.is_cancelled());
        // A connection that leaves the set makes room without shedding anyone.
        drop(second);
        let fourth = admission.enter();
        assert!(!third.shed.is_cancelled() && !fourth.shed.is_cancelled());
        drop(first);
        assert_eq!(admission.lock_pending().waiting.len(), 2);
    }
}
