//! The disk buffer's serialisation of a delivery (a list of batches).
//!
//! Little-endian, length-prefixed, no padding:
//!
//! ```text
//! u32 containers, then per container: str id, str name, str image, u8 tty,
//!                                     u32 labels, then per label: str key, str value
//! u32 batches, then per batch: u32 container index | replay << 29, u32 lines,
//!                              then per line: u8 stream, i64 timestamp, u32 ordinal, str message
//! str = u32 length + UTF-8 bytes
//! ```
//!
//! `replay` (3 bits, bit `stream.index()`) is the batch's replay flag per stream
//! ([`EventBatch::is_replay`]). Records written before the flag existed have zeros there and
//! decode as live batches.
//!
//! Containers are written once per record even when many batches share them. Decoding checks
//! every length and never panics: a record that passed its checksum but does not decode is
//! reported as corrupt like one that failed it.

use std::{collections::BTreeMap, sync::Arc};

use capture_core::{
    ContainerId, ContainerInfo, EventBatch, EventBatchBuilder, LogStream, Position,
};

/// The container index's bits that carry the batch's replay flags.
const REPLAY_SHIFT: u32 = 29;
const INDEX_MASK: u32 = (1 << REPLAY_SHIFT) - 1;

/// A record that does not decode.
#[derive(Debug, thiserror::Error)]
#[error("malformed buffer record: {0}")]
pub(crate) struct DecodeError(&'static str);

/// Appends the encoding of `batches` to `out`.
pub(crate) fn encode(out: &mut Vec<u8>, batches: &[EventBatch]) {
    // Containers in first-use order; batches refer to them by index. Deliveries hold few
    // distinct containers, so a linear search by pointer is cheaper than hashing.
    let mut containers: Vec<&Arc<ContainerInfo>> = Vec::new();
    let mut indexes: Vec<u32> = Vec::with_capacity(batches.len());
    for batch in batches {
        let container = batch.container();
        let index = match containers
            .iter()
            .position(|known| Arc::ptr_eq(known, container) || ***known == **container)
        {
            Some(index) => index,
            None => {
                containers.push(container);
                containers.len() - 1
            }
        };
        indexes.push(index as u32);
    }
    put_u32(out, containers.len());
    for container in &containers {
        put_str(out, container.id.as_str());
        put_str(out, &container.name);
        put_str(out, &container.image);
        out.push(u8::from(container.tty));
        put_u32(out, container.labels.len());
        for (key, value) in &container.labels {
            put_str(out, key);
            put_str(out, value);
        }
    }
    put_u32(out, batches.len());
    for (batch, index) in batches.iter().zip(indexes) {
        let replay = LogStream::ALL
            .iter()
            .filter(|stream| batch.is_replay(**stream))
            .fold(0u32, |bits, stream| bits | 1 << stream.index());
        let word = index.min(INDEX_MASK) | replay << REPLAY_SHIFT;
        out.extend_from_slice(&word.to_le_bytes());
        put_u32(out, batch.len());
        for line in batch.lines() {
            out.push(line.stream.index() as u8);
            out.extend_from_slice(&line.position.timestamp_nanos.to_le_bytes());
            out.extend_from_slice(&line.position.ordinal.to_le_bytes());
            put_str(out, line.message);
        }
    }
}

fn put_u32(out: &mut Vec<u8>, value: usize) {
    // Batches and strings are far below 4 GiB; saturate rather than wrap if not.
    out.extend_from_slice(&u32::try_from(value).unwrap_or(u32::MAX).to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    put_u32(out, text.len());
    out.extend_from_slice(text.as_bytes());
}

/// Reads back what [`encode`] wrote.
pub(crate) fn decode(bytes: &[u8]) -> Result<Vec<EventBatch>, DecodeError> {
    let mut reader = Reader { bytes };
    let container_count = reader.u32()? as usize;
    let mut containers = Vec::with_capacity(container_count.min(1024));
    for _ in 0..container_count {
        let id = ContainerId::new(reader.str()?).map_err(|_| DecodeError("bad container id"))?;
        let name = reader.str()?;
        let image = reader.str()?;
        let tty = reader.u8()? != 0;
        let mut labels = BTreeMap::new();
        for _ in 0..reader.u32()? {
            let key = reader.str()?.to_owned();
            labels.insert(key, reader.str()?.to_owned());
        }
        let mut info = ContainerInfo::new(id, name, image);
        info.labels = labels;
        info.tty = tty;
        containers.push(Arc::new(info));
    }
    let batch_count = reader.u32()? as usize;
    let mut batches = Vec::with_capacity(batch_count.min(65_536));
    for _ in 0..batch_count {
        let word = reader.u32()?;
        let container = containers
            .get((word & INDEX_MASK) as usize)
            .ok_or(DecodeError("bad container index"))?;
        let lines = reader.u32()? as usize;
        let mut builder =
            EventBatchBuilder::with_capacity(Arc::clone(container), lines.min(65_536), 0);
        for stream in LogStream::ALL {
            builder.set_replay(stream, word >> REPLAY_SHIFT & 1 << stream.index() != 0);
        }
        for _ in 0..lines {
            let stream = *LogStream::ALL
                .get(reader.u8()? as usize)
                .ok_or(DecodeError("bad stream"))?;
            let timestamp = i64::from_le_bytes(reader.array()?);
            let ordinal = u32::from_le_bytes(reader.array()?);
            let message = reader.str()?;
            builder.push(
                stream,
                Position::new(timestamp, ordinal),
                message.as_bytes(),
            );
        }
        batches.push(builder.finish());
    }
    if !reader.bytes.is_empty() {
        return Err(DecodeError("trailing bytes"));
    }
    Ok(batches)
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, length: usize) -> Result<&'a [u8], DecodeError> {
        let (head, rest) = self
            .bytes
            .split_at_checked(length)
            .ok_or(DecodeError("truncated"))?;
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut array = [0u8; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn str(&mut self) -> Result<&'a str, DecodeError> {
        let length = self.u32()? as usize;
        std::str::from_utf8(self.take(length)?).map_err(|_| DecodeError("invalid UTF-8"))
    }
}
