//! The chaos scenarios' Loki: test-support's loopback receiver (switchable down to 503, slowed
//! down) with every accepted entry counted in a [`Ledger`] under its `container_id` and `stream`
//! labels. It also counts what real Loki would deduplicate: an entry identical to one already
//! accepted (same stream labels, timestamp and line) is a resend, not a new line.

use std::{
    collections::HashSet,
    hash::{DefaultHasher, Hash, Hasher},
    sync::{Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use anyhow::Result;
use test_support::{
    ledger::Ledger,
    receiver::{Push, Receiver},
};

/// What the receiver has seen.
#[derive(Debug, Default)]
pub(crate) struct LokiState {
    /// Accepted entries, by container and stream.
    pub(crate) ledger: Ledger,
    /// Hashes of accepted (labels, timestamp, line), to count what Loki would deduplicate.
    distinct: HashSet<u64>,
    /// Accepted entries identical to one accepted before.
    pub(crate) identical_resends: u64,
    pub(crate) accepted_requests: u64,
    pub(crate) refused_requests: u64,
    /// Requests answered with another status (a request the receiver could not take).
    pub(crate) bad_requests: u64,
}

impl LokiState {
    fn count(&mut self, push: &Push) {
        if push.status == 503 {
            self.refused_requests += 1;
            return;
        }
        if !push.accepted() || !push.path.starts_with("/loki/api/v1/push") {
            self.bad_requests += 1;
            return;
        }
        self.accepted_requests += 1;
        for stream in &push.streams {
            let label = |name: &str| stream.labels.get(name).map_or("", String::as_str);
            for (timestamp, line) in &stream.entries {
                let mut hasher = DefaultHasher::new();
                (&stream.labels, timestamp, line).hash(&mut hasher);
                if !self.distinct.insert(hasher.finish()) {
                    self.identical_resends += 1;
                }
                self.ledger
                    .record(label("container_id"), label("stream"), line);
            }
        }
    }
}

/// A running receiver; stops when dropped.
#[derive(Debug)]
pub(crate) struct LokiReceiver {
    receiver: Mutex<Receiver>,
    state: Mutex<LokiState>,
}

impl LokiReceiver {
    /// Binds 127.0.0.1 on a free port and starts serving, up.
    pub(crate) fn start() -> Result<LokiReceiver> {
        Ok(LokiReceiver {
            receiver: Mutex::new(Receiver::start(Vec::new())),
            state: Mutex::default(),
        })
    }

    /// The base URL for the sink's `endpoint`.
    pub(crate) fn endpoint(&self) -> String {
        lock(&self.receiver).endpoint()
    }

    /// Makes the receiver answer 204 (`true`) or 503 (`false`).
    pub(crate) fn set_up(&self, up: bool) {
        lock(&self.receiver).set_up(up);
    }

    /// Makes every answer wait `delay` (a slow but healthy Loki).
    pub(crate) fn set_delay(&self, delay: Duration) {
        lock(&self.receiver).set_delay(delay);
    }

    /// What it has seen so far (the requests received since the last look counted first).
    pub(crate) fn state(&self) -> MutexGuard<'_, LokiState> {
        let pushes = lock(&self.receiver).received();
        let mut state = lock(&self.state);
        for push in &pushes {
            state.count(push);
        }
        state
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::LokiReceiver;

    fn push(receiver: &LokiReceiver, body: &[u8]) -> u16 {
        let mut gzipped = Vec::new();
        let mut encoder =
            flate2::write::GzEncoder::new(&mut gzipped, flate2::Compression::default());
        encoder.write_all(body).unwrap();
        encoder.finish().unwrap();
        let addr = receiver.endpoint().trim_start_matches("http://").to_owned();
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        write!(
            stream,
            "POST /loki/api/v1/push HTTP/1.1\r\ncontent-type: application/json\r\n\
             content-encoding: gzip\r\ncontent-length: {}\r\n\r\n",
            gzipped.len()
        )
        .unwrap();
        stream.write_all(&gzipped).unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer[9..12].parse().unwrap()
    }

    #[test]
    fn entries_are_counted_while_up_and_refused_while_down() {
        let receiver = LokiReceiver::start().unwrap();
        let body = br#"{"streams":[{"stream":{"container_id":"c","stream":"stdout"},"values":[["1","t r out 0"],["2","t r out 1"]]}]}"#;
        assert_eq!(push(&receiver, body), 204);
        receiver.set_up(false);
        assert_eq!(push(&receiver, body), 503);
        receiver.set_up(true);
        assert_eq!(push(&receiver, body), 204);
        let state = receiver.state();
        assert_eq!(state.ledger.records, 4);
        assert_eq!(state.identical_resends, 2);
        assert_eq!(state.refused_requests, 1);
        assert_eq!(state.accepted_requests, 2);
    }
}
