//! Between the stream and the decoder, and the decoder and the metrics: frames decoded into a
//! line sink, and the decoder's counters turned into metrics (per batch, not per line).

use capture_core::ContainerId;
use tracing::warn;

use crate::{
    decoder::{DecodeCounters, Decoder, LineSink},
    frame::Frame,
    metric_names,
    stream::ContainerShared,
};

/// Decodes one frame into `sink`; returns its payload size.
pub(crate) fn decode_frame(
    decoder: &mut Decoder,
    sink: &mut impl LineSink,
    frame: Frame,
    container_id: &ContainerId,
) -> usize {
    let Some(stream) = frame.stream else {
        // Not a stdout/stderr frame: most likely the daemon's own error stream
        // ("Error grabbing logs: ...").
        decoder.malformed_frame();
        let text = String::from_utf8_lossy(&frame.bytes[..frame.bytes.len().min(256)]);
        warn!(container_id = %container_id, frame = %text.trim_end(), "dropping a frame that is neither stdout nor stderr");
        return frame.bytes.len();
    };
    decoder.frame(stream, &frame.bytes, sink);
    frame.bytes.len()
}

/// Records the decoder's counters as metrics (lines dropped, lines skipped).
pub(crate) fn record_drops(counters: DecodeCounters) {
    let dropped = [
        ("truncated", counters.truncated),
        ("malformed", counters.malformed),
    ];
    for (reason, count) in dropped {
        if count > 0 {
            ::metrics::counter!(metric_names::LINES_DROPPED_TOTAL, "reason" => reason)
                .increment(count);
        }
    }
    let skipped = [
        ("replayed", counters.skipped),
        ("repeated", counters.repeated),
    ];
    for (reason, count) in skipped {
        if count > 0 {
            ::metrics::counter!(metric_names::LINES_SKIPPED_TOTAL, "reason" => reason)
                .increment(count);
        }
    }
}

/// Counts and logs reopened API streams whose cursor line Docker no longer had (`count` of
/// them). File mode counts the files Docker deleted itself (`log_capturer_log_files_lost_total`).
pub(crate) fn record_cursor_gone(shared: &ContainerShared, count: u64) {
    if count == 0 {
        return;
    }
    ::metrics::counter!(metric_names::STREAM_GAPS_TOTAL, "reason" => "rotated").increment(count);
    let info = shared.info();
    warn!(
        container_id = %info.id,
        name = %info.name,
        "Docker no longer had the last line read when the stream was reopened (its log file \
         was rotated away): the lines after it in that file are lost, their number unknown"
    );
}
