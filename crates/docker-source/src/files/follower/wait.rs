//! The file follower's waits: what wakes it (directory changes, the source's signals, its
//! timer) and what the timer does (heartbeat, batch and partial-line deadlines).
//!
//! A quiet follower wakes only for its heartbeat, and those fall on a grid of
//! [`BEAT_GRAIN`] shared by every follower: 500 quiet containers wake the runtime about once a
//! second, not 33 times. It looks at its container only when the source signals a stop (a
//! `die` event, or the periodic listing's view for a stop the events stream missed,
//! `source/listing.rs`). A signal that finds it running, and a finish refused because a
//! `start` was seen meanwhile (the events stream replays the last seconds on connect, so that
//! `start` may be old), look again after [`STOP_RECHECK_FIRST`], doubling up to
//! [`STOP_RECHECK_LAST`]; past that the container did start again (or the listing will tell).
//!
//! # Busy and quiet containers
//!
//! A container that wrote during the last read is read again after [`PAUSE`] (the one
//! coalescing policy, `coalesce.rs`), without being told of each write: after [`BUSY_READS`]
//! such reads in a row its watch stops reporting writes, which would cost dockerd an inotify
//! event per line. A quiet one (the last read found nothing) arms the watch (one-shot: the
//! first write event disarms it) and, if it was not armed, reads once more before it waits, so
//! a write made before the arming is not missed (see `files/watch.rs`).
//!
//! # No log file
//!
//! A follower that finds no log file waits, and looks at its container when signalled (or at
//! its heartbeat). A container that ran had a file (Docker creates it at the start), so a
//! stopped one with none was deleted under the follower: that is counted as a removal
//! ([`Look::Removing`], `removed.rs`), never taken for a container that wrote nothing.

use std::{io, sync::OnceLock, time::Duration};

use bollard::{
    models::{ContainerState, ContainerStateStatusEnum as Status},
    query_parameters::InspectContainerOptions,
};
use capture_core::ErrorChain;
use tokio::time::Instant;
use tracing::debug;

use super::{End, FileFollower, Wake};
use crate::{coalesce::PAUSE, error::docker_status, timestamp::api_time_nanos};

/// What an inspection of the container says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Look {
    Running,
    /// Not running; `ran`: it started at least once, so Docker created its log file.
    Stopped {
        ran: bool,
    },
    /// Docker is removing it (`removing`, or `dead` after a removal that failed): its files may
    /// be deleted already while the daemon still answers for it.
    Removing,
    /// Removed: Docker answered 404.
    Gone,
}

impl Look {
    fn of(state: &ContainerState) -> Look {
        if state.running == Some(true) {
            return Look::Running;
        }
        match state.status {
            Some(Status::REMOVING | Status::DEAD) => Look::Removing,
            _ if state.dead == Some(true) => Look::Removing,
            Some(Status::CREATED) => Look::Stopped { ran: false },
            _ => Look::Stopped { ran: true },
        }
    }
}

/// The heartbeats of quiet followers fall on multiples of this (at most; a quarter of the
/// pause between beats if that is shorter) since [`beat_grid`].
const BEAT_GRAIN: Duration = Duration::from_secs(1);

/// When a follower that beats every `every` beats next: the last point of the shared grid at
/// or before `now + every`, and never before three quarters of `every`.
fn beat_deadline(now: Instant, every: Duration) -> Instant {
    let due = now + every;
    let grain = BEAT_GRAIN.min(every / 4).max(Duration::from_millis(1));
    let into_grain = due.saturating_duration_since(beat_grid()).as_nanos() % grain.as_nanos();
    let aligned = due - Duration::from_nanos(u64::try_from(into_grain).unwrap_or(0));
    if aligned > now { aligned } else { due }
}

/// The origin of the heartbeat grid: the first time a follower asked.
fn beat_grid() -> Instant {
    static GRID: OnceLock<Instant> = OnceLock::new();
    *GRID.get_or_init(Instant::now)
}

/// The first look again at a container that was still running when a stop was signalled.
const STOP_RECHECK_FIRST: Duration = Duration::from_millis(50);
/// The longest pause between those looks; after it the follower waits for the next signal.
const STOP_RECHECK_LAST: Duration = Duration::from_secs(2);

/// When to look at the container again after a stop signal found it running.
#[derive(Debug, Clone, Copy)]
pub(super) struct StopCheck {
    at: Instant,
    pause: Duration,
}

/// Reads in a row that found data before the watch stops reporting each write: a container
/// that writes a line now and then stays armed.
const BUSY_READS: u32 = 2;

impl FileFollower {
    /// A busy container: let a millisecond of lines accumulate before reading again.
    pub(super) async fn coalesce(&self) {
        if self.assembler.is_empty() {
            return;
        }
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => {}
            _ = tokio::time::sleep(PAUSE) => {}
        }
    }

    pub(super) fn next_deadline(&self) -> Instant {
        let settings = &self.env.task.settings;
        let mut deadline = beat_deadline(Instant::now(), self.beat_every);
        if let Some(batch) = self.batch_deadline {
            deadline = deadline.min(batch);
        }
        if let Some(partial) = self.partial_since {
            deadline = deadline.min(partial + settings.partial_flush_timeout);
        }
        if let Some(event) = self.multiline.deadline() {
            deadline = deadline.min(event);
        }
        if let Some(check) = self.stop_check {
            deadline = deadline.min(check.at);
        }
        deadline
    }

    /// A stop was signalled: if the container has stopped, reads to the end and finishes
    /// (`Some`); if it still runs, a look again is scheduled (see the module docs).
    ///
    /// What is written is read and sent before the look: dockerd answers an inspection of a
    /// container whose exit it is handling only when it is done (0.26-0.38 s measured here,
    /// after the `die` event), and the container's last lines would wait that long.
    pub(super) async fn on_stop_signal(&mut self) -> io::Result<Option<End>> {
        if let Some(end) = self.read_available().await? {
            return Ok(Some(end));
        }
        if let Err(end) = self.send_batch().await {
            return Ok(Some(end));
        }
        if self.is_running().await {
            self.look_again_later();
            return Ok(None);
        }
        self.drain_and_finish().await.map(Some)
    }

    /// At the end of the files: a busy container waits [`PAUSE`] at most, a quiet one
    /// until something happens. `None`: the watch was armed just now, read again first.
    pub(super) async fn next_wake(&mut self) -> Option<Wake> {
        if self.busy_reads == 0 {
            // A quiet follower keeps no read buffer: 500 idle containers would hold 2 MiB.
            self.release_buffer();
            let armed_now = self
                .registration
                .as_mut()
                .is_some_and(super::super::watch::Registration::arm);
            if armed_now {
                return None;
            }
            return Some(self.wait().await);
        }
        if self.busy_reads >= BUSY_READS
            && let Some(registration) = &mut self.registration
        {
            registration.disarm();
        }
        let deadline = self.next_deadline().min(Instant::now() + PAUSE);
        Some(self.wait_until(deadline).await)
    }

    /// Looks at the container again after a pause that doubles each time it still runs.
    pub(super) fn look_again_later(&mut self) {
        let pause = self
            .stop_check
            .map_or(STOP_RECHECK_FIRST, |check| check.pause * 2);
        self.stop_check = (pause <= STOP_RECHECK_LAST).then(|| StopCheck {
            at: Instant::now() + pause,
            pause,
        });
    }

    pub(super) async fn wait(&mut self) -> Wake {
        let deadline = self.next_deadline();
        self.wait_until(deadline).await
    }

    async fn wait_until(&mut self, deadline: Instant) -> Wake {
        let changed = async {
            match &mut self.registration {
                Some(registration) => registration.changed().await,
                None => std::future::pending().await,
            }
        };
        let shared = self.env.task.shared.clone();
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => Wake::Cancelled,
            _ = self.env.signal.notified() => Wake::Signal,
            () = shared.released() => Wake::Released,
            () = changed => Wake::Changed,
            _ = tokio::time::sleep_until(deadline) => Wake::Timer,
        }
    }

    /// The timer: heartbeat, partial line and batch deadlines, and the look again at a
    /// container signalled to stop.
    pub(super) async fn on_timer(&mut self) -> io::Result<Option<End>> {
        self.heartbeat.beat();
        let now = Instant::now();
        if self.stop_check.is_some_and(|check| now >= check.at)
            && !self.env.signal.is_removed()
            && let Some(end) = self.on_stop_signal().await?
        {
            return Ok(Some(end));
        }
        let settings = self.env.task.settings.clone();
        let mut flushed = false;
        if self
            .partial_since
            .is_some_and(|since| now >= since + settings.partial_flush_timeout)
        {
            self.flush_partials();
            flushed = true;
        }
        // A held event whose stream went quiet: send it now.
        flushed |= self.flush_expired_events(now);
        if flushed && let Err(end) = self.send_batch().await {
            return Ok(Some(end));
        }
        if self.batch_deadline.is_some_and(|deadline| now >= deadline)
            && let Err(end) = self.send_batch().await
        {
            return Ok(Some(end));
        }
        Ok(None)
    }

    /// No log file: the container is gone, or has not written one yet.
    pub(super) async fn wait_for_a_file(&mut self) -> io::Result<Option<End>> {
        if self.env.signal.is_removed() {
            return self.drain_removed().await.map(Some);
        }
        match self.wait().await {
            Wake::Cancelled => Ok(Some(End::Cancelled)),
            Wake::Changed => Ok(None),
            // Nothing written, nothing to drain.
            Wake::Released => Ok(self.complete_release()),
            Wake::Signal | Wake::Timer => {
                self.heartbeat.beat();
                match self.look().await {
                    Look::Running => Ok(None),
                    // Docker creates the log file when the container starts: none to read.
                    Look::Stopped { ran: false } => Ok(Some(End::Finished)),
                    look @ (Look::Stopped { ran: true } | Look::Removing) => {
                        self.stopped_with_no_file(look).await.map(Some)
                    }
                    // Removed before its files were opened (its removal may not be signalled
                    // yet): what the watcher holds is read, the rest counted as lost.
                    Look::Gone => self.drain_removed().await.map(Some),
                }
            }
        }
    }

    /// A container that ran, and had no log file at the last look. A file written since is
    /// read to its end. Still none: Docker deleted it. A `--rm` job's directory goes before the
    /// container leaves the daemon, which answers `removing`, `dead` or `exited` meanwhile, so
    /// its removal is not signalled yet; what the watcher holds is read, the rest counted as
    /// lost, never taken for a container that wrote nothing.
    async fn stopped_with_no_file(&mut self, look: Look) -> io::Result<End> {
        if self.open()? && look != Look::Removing {
            return self.drain_and_finish().await;
        }
        self.drain_removed().await
    }

    /// The container stopped: read what is left, then finish.
    pub(super) async fn drain_and_finish(&mut self) -> io::Result<End> {
        if let Some(end) = self.read_available().await? {
            return Ok(end);
        }
        Ok(self.finish().await)
    }

    /// Sends the partial line, the open multiline events and what is assembled: the
    /// container's lines are all read.
    pub(super) async fn finish(&mut self) -> End {
        self.flush_all_lines();
        match self.send_batch().await {
            Ok(()) => End::Finished,
            Err(end) => end,
        }
    }

    /// Whether the container runs (a failed inspection counts as running: look again later).
    pub(super) async fn is_running(&self) -> bool {
        self.look().await == Look::Running
    }

    /// What the container's inspection says (a failed one counts as running: look again
    /// later).
    pub(super) async fn look(&self) -> Look {
        let id = self.env.task.shared.id.as_str();
        // Boxed: bollard's future is most of the follower's own size, and it is held only while
        // asking (500 idle followers would each keep room for it).
        let inspect = Box::pin(
            self.env
                .task
                .docker
                .inspect_container(id, None::<InspectContainerOptions>),
        );
        let response = tokio::select! {
            biased;
            _ = self.cancel.cancelled() => return Look::Running,
            response = inspect => response,
        };
        self.heartbeat.beat();
        match response {
            Ok(response) => {
                let state = response.state.unwrap_or_default();
                // The stop this task may complete after (the drained mark of `startup.rs`).
                self.env
                    .task
                    .shared
                    .observe_finished_at(api_time_nanos(state.finished_at.as_deref()));
                Look::of(&state)
            }
            Err(error) if docker_status(&error) == Some(404) => Look::Gone,
            Err(error) => {
                debug!(container_id = %id, error = %ErrorChain(&error), "cannot inspect the container; looking again later");
                Look::Running
            }
        }
    }

    /// Sleeps, beating; returns `true` if cancelled meanwhile.
    pub(super) async fn pause(&self, delay: Duration) -> bool {
        self.heartbeat
            .sleep(delay, self.beat_every, &self.cancel)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inspection_tells_a_removal_from_a_stop() {
        let state = |status, running, dead| ContainerState {
            status: Some(status),
            running: Some(running),
            dead: Some(dead),
            ..ContainerState::default()
        };
        let cases = [
            (state(Status::RUNNING, true, false), Look::Running),
            (
                state(Status::EXITED, false, false),
                Look::Stopped { ran: true },
            ),
            (
                state(Status::CREATED, false, false),
                Look::Stopped { ran: false },
            ),
            // Docker deletes the directory while the container is `removing`; a removal that
            // failed leaves it `dead`.
            (state(Status::REMOVING, false, false), Look::Removing),
            (state(Status::DEAD, false, true), Look::Removing),
            (state(Status::EXITED, false, true), Look::Removing),
        ];
        for (state, look) in cases {
            assert_eq!(Look::of(&state), look, "{state:?}");
        }
        assert_eq!(
            Look::of(&ContainerState::default()),
            Look::Stopped { ran: true }
        );
    }

    #[test]
    fn quiet_followers_beat_on_one_grid_and_never_late() {
        let every = Duration::from_secs(15);
        let start = Instant::now();
        for step in 0..200u64 {
            let now = start + Duration::from_millis(step * 137);
            let deadline = beat_deadline(now, every);
            assert!(deadline <= now + every, "never later than the beat is due");
            assert!(deadline >= now + every * 3 / 4, "never much earlier either");
            let phase = deadline.duration_since(beat_grid()).as_nanos() % BEAT_GRAIN.as_nanos();
            assert_eq!(phase, 0, "on the shared grid");
        }
        // Beats more often than the grain: a quarter of their pause is the grain.
        let now = start + Duration::from_millis(7);
        let quick = beat_deadline(now, Duration::from_millis(400));
        assert!(
            quick > now + Duration::from_millis(299) && quick <= now + Duration::from_millis(400)
        );
    }
}
