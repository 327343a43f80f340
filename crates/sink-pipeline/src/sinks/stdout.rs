//! The stdout sink: the JSON record or a plain-text line per log line.

use std::io::Write;

use capture_core::EventBatch;

use crate::{
    config::{StdoutFormat, StdoutSinkConfig},
    record::RecordEncoder,
    sink::{Sink, SinkError},
};

/// Writes each delivery to standard output with one `write` call.
#[derive(Debug)]
pub(crate) struct StdoutSink {
    format: StdoutFormat,
    encoder: RecordEncoder,
    /// Reused for every delivery, so lines are rendered without allocating.
    buffer: Vec<u8>,
}

impl StdoutSink {
    pub(crate) fn new(config: &StdoutSinkConfig) -> StdoutSink {
        StdoutSink {
            format: config.format,
            encoder: RecordEncoder::default(),
            buffer: Vec::new(),
        }
    }
}

impl Sink for StdoutSink {
    async fn deliver(&mut self, batches: &[EventBatch]) -> Result<(), SinkError> {
        self.buffer.clear();
        for batch in batches {
            let container = batch.container();
            for line in batch.lines() {
                match self.format {
                    StdoutFormat::Json => {
                        self.encoder.json_line(&mut self.buffer, container, &line)
                    }
                    StdoutFormat::Text => {
                        self.encoder.text_line(&mut self.buffer, container, &line)
                    }
                }
            }
        }
        std::io::stdout()
            .lock()
            .write_all(&self.buffer)
            .map_err(SinkError::from_io)
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        std::io::stdout().lock().flush().map_err(SinkError::from_io)
    }
}
