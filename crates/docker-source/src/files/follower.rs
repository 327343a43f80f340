//! A container's supervised task in file mode: read its log files, decode, batch, send.
//!
//! The task runs on a stream-worker thread like the API follower and produces the same
//! batches through the same [`Assembler`] and [`send_assembled`]: same heartbeats, same
//! acknowledgements, same counters. Its loop reads everything written (64 KiB at a time,
//! through the [`Tail`], which follows rotation), then waits for the first of: a change in the
//! log directory ([`Registration`]), a signal from the source (the container died or was
//! removed; the source's periodic listing repeats a stop the events stream missed),
//! cancellation, or its timer (heartbeat, batch latency, partial line).
//!
//! # Batching
//!
//! At the end of what is written, the batch is sent at once when the previous one left more
//! than `batch_max_latency` ago (a quiet container: low latency); otherwise it waits for more
//! until then, and a busy container's wake-ups are spaced by a millisecond, so a fast writer
//! costs one wake-up per millisecond, not one per line.
//!
//! # End
//!
//! When the container stops, the task reads to the end, sends the pending partial line and
//! completes (unless it was started again meanwhile). When it is removed, the task still reads
//! every file it holds open to its end: Docker deleted the files, the descriptors keep them.

use std::{io, sync::Arc, time::Duration};

use capture_core::{Backoff, ErrorChain, LogStream};
use task_supervisor::{Heartbeat, TaskContext, TaskError};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{
    EntryFormat, Step,
    cursor::{FileCursor, FileHint},
    tail::{Losses, Progress, Start, Tail},
    target::{FileSignal, FileTarget},
    watch::{Registration, Watcher},
};
use crate::{
    Error,
    assembler::Assembler,
    checkpoint::StreamPositions,
    decoder::Decoder,
    metric_names,
    multiline::Multiline,
    output::record_drops,
    stream::{StreamEnd, TaskEnv, reconnected, send_assembled},
};

/// The most read from a file at once.
const READ_MAX: usize = 64 * 1024;
/// The first read of a wake-up (doubling while reads come back full).
const READ_MIN: usize = 4 * 1024;
/// Reopen backoff after errors.
const REOPEN_BACKOFF_BASE: Duration = Duration::from_millis(100);
const REOPEN_BACKOFF_CAP: Duration = Duration::from_secs(5);
/// Consecutive failed reads before the task fails (and the supervisor restarts it).
const MAX_CONSECUTIVE_ERRORS: u32 = 10;

/// Everything a file-mode attempt needs (cloned per attempt).
#[derive(Debug, Clone)]
pub(crate) struct FileEnv {
    pub(crate) task: TaskEnv,
    pub(crate) target: FileTarget,
    pub(crate) watcher: Watcher,
    pub(crate) cursor: Arc<FileCursor>,
    pub(crate) signal: Arc<FileSignal>,
}

/// The body of a container task in file mode (one attempt).
pub(crate) async fn file_task(ctx: TaskContext, env: FileEnv) -> Result<(), TaskError> {
    env.task.shared.mark_active();
    let id = env.task.shared.id.clone();
    let mut follower = FileFollower::new(&ctx, env);
    match follower.run().await {
        Ok(()) => Ok(()),
        Err(error) if !error.is_transient() => {
            warn!(container_id = %id, error = %ErrorChain(&error), "container log files cannot be read; giving up on it");
            follower.env.task.shared.mark_inactive();
            Err(TaskError::permanent(error))
        }
        Err(error) => Err(TaskError::transient(error)),
    }
}

/// How following ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The container stopped or was removed, and everything was read and sent.
    Finished,
    /// The filters released the container; what was written at the release was sent and the
    /// task completed (`release.rs`).
    Released,
    Cancelled,
    PipelineClosed,
}

impl From<StreamEnd> for End {
    fn from(end: StreamEnd) -> End {
        match end {
            StreamEnd::Cancelled => End::Cancelled,
            _ => End::PipelineClosed,
        }
    }
}

/// What ended a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
    Cancelled,
    /// The log directory changed (or a poll is due).
    Changed,
    /// The source signalled a stop or a removal.
    Signal,
    /// The filters released the container.
    Released,
    Timer,
}

/// The entry that ends where parsing stands (the hint's proof).
#[derive(Debug, Clone, Copy)]
struct LastEntry {
    start: u64,
    end: u64,
    timestamp: i64,
}

struct FileFollower {
    env: FileEnv,
    heartbeat: Heartbeat,
    cancel: CancellationToken,
    beat_every: Duration,
    tty: bool,
    decoder: Decoder,
    /// Between the decoder and the assembler: joins the lines of an event (see `lines.rs`).
    multiline: Multiline,
    assembler: Assembler,
    format: Box<dyn EntryFormat + Send + Sync>,
    tail: Option<Tail>,
    /// The watch on the log directory (set by `run`).
    registration: Option<Registration>,
    /// Bytes read and not parsed yet: the start of an entry whose end is not read yet.
    buffer: Vec<u8>,
    read_size: usize,
    /// Reads in a row that found data: the container is busy (see `wait.rs`).
    busy_reads: u32,
    last_entry: Option<LastEntry>,
    last_send: Instant,
    batch_deadline: Option<Instant>,
    partial_since: Option<Instant>,
    /// A stop signal found the container still running: look again then (`wait.rs`).
    stop_check: Option<wait::StopCheck>,
    /// Where the drain of a released container stops (`release.rs`).
    drain_mark: Option<release::DrainMark>,
}

impl FileFollower {
    fn new(ctx: &TaskContext, env: FileEnv) -> FileFollower {
        let info = env.task.shared.info();
        let settings = env.task.settings.clone();
        let now = Instant::now();
        FileFollower {
            heartbeat: ctx.heartbeat_handle(),
            cancel: ctx.cancellation_token(),
            beat_every: (ctx.heartbeat_interval() / 2).max(Duration::from_millis(10)),
            tty: info.tty,
            // Lines an earlier run may have delivered are a replay, as on the API path.
            decoder: Decoder::new(settings.max_line_bytes).replays_through(settings.replay_through),
            multiline: Multiline::new(settings.multiline.for_container(&info)),
            assembler: Assembler::new(info, settings.batch_max_lines, settings.batch_max_bytes),
            format: env.target.driver.format(),
            tail: None,
            registration: None,
            buffer: Vec::new(),
            read_size: READ_MIN,
            busy_reads: 0,
            last_entry: None,
            last_send: now,
            batch_deadline: None,
            partial_since: None,
            stop_check: None,
            drain_mark: None,
            env,
        }
    }

    async fn run(&mut self) -> Result<(), Error> {
        let files = &self.env.target.files;
        self.registration = Some(self.env.watcher.register(files.dir(), files.live_name()));
        let mut backoff = Backoff::new(REOPEN_BACKOFF_BASE, REOPEN_BACKOFF_CAP);
        let mut errors = 0u32;
        let id = self.env.task.shared.id.clone();
        loop {
            match self.follow(&mut errors).await {
                Ok(End::Cancelled | End::Released) => return Ok(()),
                Ok(End::PipelineClosed) => return Err(Error::PipelineClosed),
                Ok(End::Finished) => {
                    if self.env.task.shared.try_finish() {
                        info!(container_id = %id, "container stopped; log task completed");
                        return Ok(());
                    }
                    // Started again meanwhile, or so a replayed `start` event said: the files
                    // continue, and the follower looks at the container again soon.
                    self.stop_check = None;
                    self.look_again_later();
                }
                Err(source) if source.kind() == io::ErrorKind::PermissionDenied => {
                    return Err(Error::FilesUnreadable {
                        path: self.env.target.files.dir().to_path_buf(),
                        source,
                    });
                }
                Err(source) => {
                    errors += 1;
                    let error = Error::LogFiles {
                        path: self.env.target.files.dir().to_path_buf(),
                        source,
                    };
                    if errors > MAX_CONSECUTIVE_ERRORS {
                        return Err(error);
                    }
                    warn!(container_id = %id, error = %ErrorChain(&error), "reading the log files failed; reopening them");
                    reconnected("error");
                    self.tail = None;
                    if self.pause(backoff.next_delay()).await {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Reads, sends and waits until the container ends (or the task is stopped).
    async fn follow(&mut self, errors: &mut u32) -> io::Result<End> {
        loop {
            if self.tail.is_none() {
                if self.open()? {
                    *errors = 0;
                } else if let Some(end) = self.wait_for_a_file().await? {
                    return Ok(end);
                } else {
                    continue;
                }
            }
            if let Some(end) = self.read_available().await? {
                return Ok(end);
            }
            if let Err(end) = self.settle_batch().await {
                return Ok(end);
            }
            if self.env.signal.is_removed() {
                return self.drain_removed().await;
            }
            if self.is_released()
                && let Some(end) = self.drain_release().await?
            {
                return Ok(end);
            }
            let Some(wake) = self.next_wake().await else {
                // Told of writes from now on; one made since the last read sent no event.
                continue;
            };
            match wake {
                Wake::Cancelled => return Ok(End::Cancelled),
                Wake::Changed => self.coalesce().await,
                Wake::Released => {
                    if let Some(end) = self.drain_release().await? {
                        return Ok(end);
                    }
                }
                Wake::Signal => {
                    if !self.env.signal.is_removed()
                        && let Some(end) = self.on_stop_signal().await?
                    {
                        return Ok(end);
                    }
                }
                Wake::Timer => {
                    if let Some(end) = self.on_timer().await? {
                        return Ok(end);
                    }
                }
            }
        }
    }

    /// Opens the files where reading resumes: at the resume hint if it still holds, else at
    /// the oldest file (lines at or before the read positions are skipped). `false`: no log
    /// file exists (yet).
    fn open(&mut self) -> io::Result<bool> {
        let read = self.reset_reading();
        if let Some(hint) = self.env.cursor.resume_hint() {
            let start = Start::At {
                id: hint.file,
                offset: hint.offset,
            };
            if let Some(tail) = Tail::open(self.env.target.files.clone(), start, self.births())?
                && hint.holds(&tail, &mut *self.format)
            {
                debug!(container_id = %self.env.task.shared.id, offset = hint.offset, "resuming the log files at the hint");
                self.decoder.reset_after(hint.last, read);
                self.tail = Some(self.configure(tail));
                return Ok(true);
            }
            debug!(container_id = %self.env.task.shared.id, "the resume hint no longer holds; reading from the oldest log file");
        }
        let Some(tail) = Tail::open(self.env.target.files.clone(), Start::Oldest, self.births())?
        else {
            return Ok(false);
        };
        self.decoder.reset(read);
        self.tail = Some(self.configure(tail));
        Ok(true)
    }

    /// Forgets what was read and not sent (a new tail reads it again): returns the read
    /// positions, lines at or before which are skipped.
    fn reset_reading(&mut self) -> StreamPositions {
        self.buffer.clear();
        self.last_entry = None;
        self.discard_held();
        self.to_decoder(self.env.task.shared.read_positions())
    }

    fn configure(&self, tail: Tail) -> Tail {
        let tail = tail.with_rotated_size(self.env.target.rotated_size);
        if self.env.target.may_truncate {
            tail
        } else {
            tail.without_truncation()
        }
    }

    /// The count of the live file's creations, when inotify reports them.
    fn births(&self) -> Option<super::watch::Births> {
        self.registration.as_ref()?.births()
    }

    /// The read positions as the decoder counts them: a TTY container's one stream is stored
    /// as stdout.
    fn to_decoder(&self, positions: StreamPositions) -> StreamPositions {
        if self.tty {
            [positions[LogStream::Tty], None, None].into()
        } else {
            positions
        }
    }

    /// Reads and decodes everything written so far, sending full batches. `Some`: the task
    /// must end.
    async fn read_available(&mut self) -> io::Result<Option<End>> {
        self.read_size = READ_MIN;
        let mut found = false;
        loop {
            let Some(tail) = self.tail.as_mut() else {
                return Ok(None);
            };
            tail.check()?;
            let progress = tail.read(&mut self.buffer, self.read_size)?;
            let losses = tail.take_losses();
            record_losses(losses);
            match progress {
                Progress::Data(read) => {
                    found = true;
                    if let Some(registration) = &mut self.registration {
                        registration.saw_data();
                    }
                    if read == self.read_size {
                        self.read_size = (self.read_size * 2).min(READ_MAX);
                    }
                    if let Err(end) = self.parse_and_send().await {
                        return Ok(Some(end));
                    }
                    self.heartbeat.beat();
                    tokio::task::consume_budget().await;
                    if self.reached_drain_mark() {
                        return Ok(None);
                    }
                }
                Progress::NextFile | Progress::Truncated => self.drop_unfinished_entry(),
                Progress::Idle => {
                    self.busy_reads = if found { self.busy_reads + 1 } else { 0 };
                    self.shrink_buffer();
                    return Ok(None);
                }
            }
        }
    }

    /// Bytes left from a generation that ended or was truncated are an entry Docker never
    /// finished: counted as malformed.
    fn drop_unfinished_entry(&mut self) {
        if !self.buffer.is_empty() {
            self.decoder.malformed_frame();
            self.buffer.clear();
        }
        self.last_entry = None;
    }

    fn shrink_buffer(&mut self) {
        if self.buffer.capacity() > 2 * READ_MIN {
            self.release_buffer();
        }
    }

    /// Frees the read buffer if it holds no bytes (the next read allocates it again).
    fn release_buffer(&mut self) {
        if self.buffer.is_empty() {
            self.buffer = Vec::new();
        }
    }

    /// Decodes the complete entries in the buffer, sending each batch that fills up.
    async fn parse_and_send(&mut self) -> Result<(), End> {
        loop {
            let full = self.parse_buffer();
            self.partial_since = match (self.decoder.has_partial(), self.partial_since) {
                (true, Some(since)) => Some(since),
                (true, None) => Some(Instant::now()),
                (false, _) => None,
            };
            if !full {
                return Ok(());
            }
            self.send_batch().await?;
        }
    }

    /// Decodes entries until the buffer holds no complete one (`false`) or the batch is full
    /// (`true`); keeps what is left.
    fn parse_buffer(&mut self) -> bool {
        let Some(tail) = &self.tail else {
            return false;
        };
        let (_, read_to) = tail.position();
        let base = read_to - self.buffer.len() as u64;
        let mut at = 0usize;
        let mut full = false;
        while !full {
            let step = self.format.next(&self.buffer[at..]);
            let (len, entry) = match step {
                Step::Entry { entry, len } => (len, Some(entry)),
                Step::Malformed { len } => {
                    self.decoder.malformed_frame();
                    (len, None)
                }
                Step::Skip { len } => (len, None),
                Step::NeedMore => break,
            };
            self.last_entry = entry.map(|entry| LastEntry {
                start: base + at as u64,
                end: base + (at + len) as u64,
                timestamp: entry.timestamp_nanos,
            });
            if let Some(entry) = entry {
                let (decoder, multiline) = (&mut self.decoder, &mut self.multiline);
                lines::decode(self.tty, decoder, multiline, &mut self.assembler, entry);
            }
            at += len;
            full = self.assembler.is_full();
        }
        self.buffer.drain(..at);
        full
    }

    /// Where reading stands, as a hint, if it is at the end of an entry with no line held back
    /// (half read, or in an open multiline event).
    fn hint_here(&self) -> Option<FileHint> {
        let tail = self.tail.as_ref()?;
        let last = self.last_entry?;
        let (file, read_to) = tail.position();
        let parsed_to = read_to - self.buffer.len() as u64;
        if self.holds_lines() || last.end != parsed_to || !tail.is_plain() {
            return None;
        }
        Some(FileHint {
            file,
            offset: last.end,
            entry_start: last.start,
            entry_timestamp: last.timestamp,
            last: self.decoder.last_positions(),
        })
    }

    /// Sends the assembled batch (if any) and records its resume hint.
    async fn send_batch(&mut self) -> Result<(), End> {
        record_drops(self.decoder.take_counters());
        self.multiline.take_counters().record();
        let hint = self.hint_here();
        let Some(assembled) = self.assembler.take(&self.env.task.shared) else {
            return Ok(());
        };
        // A batch cut where a replay ends leaves the rest assembled: the hint is past it.
        let hint = hint.filter(|_| self.assembler.is_empty());
        // Boxed: the send is most of the follower's own size and is held only while a batch
        // waits for room (500 idle followers would each keep room for it).
        let mut send = Box::pin(send_assembled(
            &self.env.task,
            &self.heartbeat,
            &self.cancel,
            self.beat_every,
            assembled,
        ));
        // While the pipeline is full, rotations go on: new files are opened as they appear, so
        // Docker deleting them later loses nothing.
        loop {
            let changed = async {
                match &mut self.registration {
                    Some(registration) => registration.changed().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                sent = &mut send => {
                    sent.map_err(End::from)?;
                    break;
                }
                () = changed => {
                    if let Some(tail) = &mut self.tail
                        && let Err(error) = tail.check()
                    {
                        debug!(error = %error, "cannot look for rotated log files while the pipeline is full");
                    }
                }
            }
        }
        self.last_send = Instant::now();
        self.batch_deadline = None;
        // Files are read in order: with no line held back, everything before the newest line
        // sent was sent (the read-through time, kept for a later read through the API).
        if !self.holds_lines() {
            self.env.task.shared.caught_up();
        }
        if let Some(hint) = hint {
            self.env
                .cursor
                .sent(self.env.task.shared.read_positions(), hint);
        }
        Ok(())
    }

    /// At the end of what is written: send now if the last batch left long enough ago, else
    /// let the batch fill until `batch_max_latency` after it.
    async fn settle_batch(&mut self) -> Result<(), End> {
        if self.assembler.is_empty() {
            return Ok(());
        }
        let latency = self.env.task.settings.batch_max_latency;
        if self.last_send.elapsed() >= latency {
            return self.send_batch().await;
        }
        self.batch_deadline.get_or_insert(self.last_send + latency);
        Ok(())
    }
}

mod lines;
mod release;
mod removed;
#[cfg(test)]
mod tests;
mod wait;

/// Counts what Docker deleted or overwrote before it was read.
fn record_losses(losses: Losses) {
    if losses.rotated_files > 0 {
        ::metrics::counter!(metric_names::LOG_FILES_LOST_TOTAL, "reason" => "rotated")
            .increment(losses.rotated_files);
        ::metrics::counter!(metric_names::LOG_FILE_BYTES_LOST_TOTAL, "reason" => "rotated")
            .increment(losses.rotated_bytes);
    }
    if losses.truncations > 0 {
        ::metrics::counter!(metric_names::LOG_FILES_LOST_TOTAL, "reason" => "truncated")
            .increment(losses.truncations);
    }
}
