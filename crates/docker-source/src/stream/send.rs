//! Sending a container task's batches to the pipeline: beating while the channel is full,
//! advancing the read position and counting what was taken; for an API task of a removed
//! container, giving up at the drain's bound (see [`crate::removal`]); and reading back, after a
//! send, what Docker's follower skipped (see [`crate::recovery`]).

use std::{pin::pin, time::Duration};

use capture_core::PerStream;
use task_supervisor::Heartbeat;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Follower, StreamEnd, TaskEnv};
use crate::{
    assembler::Assembled,
    metric_names,
    output::{record_cursor_gone, record_drops},
    recovery,
    removal::{DrainBounds, Progress, Removal},
};

/// A removed container's drain, as a send sees it.
pub(crate) struct Drain<'a> {
    pub(super) removal: &'a Removal,
    /// The task's progress before the send.
    pub(super) progress: Progress,
    pub(super) bounds: DrainBounds,
}

impl Drain<'_> {
    /// When the drain ends (`None`: the container is not removed).
    fn deadline(&self) -> Option<Instant> {
        let removed_at = self.removal.at()?;
        Some(self.progress.deadline(removed_at, self.bounds))
    }
}

/// Sends an assembled batch, beating while the channel is full; then advances the read position
/// and counts the lines. Returns the stream end to report if it could not be sent.
pub(crate) async fn send_assembled(
    env: &TaskEnv,
    heartbeat: &Heartbeat,
    cancel: &CancellationToken,
    beat_every: Duration,
    assembled: Assembled,
) -> Result<(), StreamEnd> {
    send_assembled_within(env, heartbeat, cancel, beat_every, assembled, None).await
}

/// [`send_assembled`], given up at a removed container's `drain` bound: the batch's lines are
/// then returned as [`StreamEnd::RemovalCut`].
pub(super) async fn send_assembled_within(
    env: &TaskEnv,
    heartbeat: &Heartbeat,
    cancel: &CancellationToken,
    beat_every: Duration,
    assembled: Assembled,
    drain: Option<Drain<'_>>,
) -> Result<(), StreamEnd> {
    let lines_per_stream = assembled.lines;
    let batch_lines = assembled.batch.len() as u64;
    let bytes = assembled.batch.message_bytes();
    let invalid = assembled.batch.invalid_utf8_lines();
    let removal = drain.as_ref().map(|drain| drain.removal.token());
    let mut removed = pin!(async {
        match &removal {
            Some(token) => token.cancelled().await,
            None => std::future::pending().await,
        }
    });
    let mut removal_seen = false;
    let mut send = pin!(env.batch_tx.send(assembled.batch));
    loop {
        let now = Instant::now();
        let deadline = drain
            .as_ref()
            .filter(|_| removal_seen)
            .and_then(Drain::deadline);
        let wake = deadline.map_or(now + beat_every, |drain| drain.min(now + beat_every));
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(StreamEnd::Cancelled),
            sent = &mut send => match sent {
                Ok(()) => break,
                Err(_) => return Err(StreamEnd::PipelineClosed),
            },
            () = &mut removed, if !removal_seen => removal_seen = true,
            () = tokio::time::sleep_until(wake) => {
                heartbeat.beat();
                if deadline.is_some_and(|drain| Instant::now() >= drain) {
                    // A removed container's lines that the pipeline did not take in time.
                    return Err(StreamEnd::RemovalCut { dropped: batch_lines });
                }
            }
        }
    }
    heartbeat.beat();
    env.shared.advance_read(&assembled.last);
    count_sent(lines_per_stream, bytes, invalid);
    Ok(())
}

/// Counts the lines and bytes of a batch taken by the pipeline.
fn count_sent(lines_per_stream: PerStream<u64>, bytes: usize, invalid: u32) {
    for (stream, &count) in lines_per_stream.iter() {
        if count > 0 {
            ::metrics::counter!(metric_names::LINES_TOTAL, "stream" => stream.as_str())
                .increment(count);
        }
    }
    ::metrics::counter!(metric_names::BYTES_TOTAL).increment(bytes as u64);
    if invalid > 0 {
        ::metrics::counter!(metric_names::INVALID_UTF8_LINES_TOTAL).increment(u64::from(invalid));
    }
}

impl Follower {
    /// Sends the assembled batches (if any), beating while the channel is full; then advances
    /// the read position. Then reads what Docker's follower skipped, if it switched files (see
    /// [`crate::recovery`]). Returns the stream end to report if they could not be sent.
    pub(super) async fn send_batch(&mut self) -> Result<(), StreamEnd> {
        let counters = self.decoder.take_counters();
        record_drops(counters);
        record_cursor_gone(&self.env.shared, counters.cursor_gone);
        self.multiline.take_counters().record();
        while let Some(assembled) = self.assembler.take(&self.env.shared) {
            self.send_assembled(assembled).await?;
        }
        self.read_skipped(false).await?;
        // Nothing decoded is held back (a partial line, an open multiline event): every line
        // before the newest one sent was sent.
        if !self.decoder.has_partial() && !self.multiline.holds_lines() {
            self.env.shared.caught_up();
        }
        Ok(())
    }

    /// Reads back what Docker's follower skipped at the file switches found (see
    /// [`crate::recovery`]); `ended`: the stream ended, take every switch.
    pub(super) async fn read_skipped(&mut self, ended: bool) -> Result<(), StreamEnd> {
        for switch in self.decoder.take_file_switches(ended) {
            let recovered =
                recovery::read_skipped(&self.env, &self.cancel, &mut self.assembler, switch).await;
            if recovered > 0 {
                while let Some(assembled) = self.assembler.take(&self.env.shared) {
                    self.send_assembled(assembled).await?;
                }
            }
        }
        Ok(())
    }

    /// Sends one batch; a removed container's drain bound gives it up (the lines it and the
    /// assembler hold are then counted as dropped).
    pub(super) async fn send_assembled(&mut self, assembled: Assembled) -> Result<(), StreamEnd> {
        let drain = Drain {
            removal: &self.env.shared.removal,
            progress: self.progress,
            bounds: self.env.settings.removed_drain,
        };
        let sent = send_assembled_within(
            &self.env,
            &self.heartbeat,
            &self.cancel,
            self.beat_every,
            assembled,
            Some(drain),
        )
        .await;
        match sent {
            Err(StreamEnd::RemovalCut { dropped }) => {
                let dropped = dropped + self.assembler.pending_lines() as u64;
                self.assembler.discard();
                Err(StreamEnd::RemovalCut { dropped })
            }
            Err(end) => Err(end),
            Ok(()) => {
                self.progress.made();
                Ok(())
            }
        }
    }
}
