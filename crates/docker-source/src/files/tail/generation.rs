//! One generation (one file's content) being read: plain or gzip-compressed, with its first
//! bytes kept to recognise it.

use std::{
    fs::File,
    io::{self, Read, Seek, SeekFrom},
    os::unix::fs::FileExt,
    path::PathBuf,
};

use flate2::read::GzDecoder;

use super::{
    HEAD_BYTES,
    listing::{FileId, Listed},
};

/// A generation's content.
pub(super) enum Reader {
    Plain(File),
    Gzip(Box<GzDecoder<File>>),
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Reader::Plain(_) => "Plain",
            Reader::Gzip(_) => "Gzip",
        })
    }
}

impl Reader {
    /// Opens `listed`'s content (decompressing a compressed file); `None` if its path no
    /// longer names that file.
    fn open(listed: &Listed) -> io::Result<Option<Reader>> {
        let file = match File::open(&listed.path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        if FileId::of(&file.metadata()?) != listed.id {
            return Ok(None);
        }
        Ok(Some(if listed.compressed {
            Reader::Gzip(Box::new(GzDecoder::new(file)))
        } else {
            Reader::Plain(file)
        }))
    }
}

impl Read for Reader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        match self {
            Reader::Plain(file) => file.read(out),
            Reader::Gzip(decoder) => decoder.read(out),
        }
    }
}

/// One file's content, being read.
#[derive(Debug)]
pub(super) struct Generation {
    pub(super) id: FileId,
    /// Its birth number (see `look.rs`).
    pub(super) number: i64,
    pub(super) path: PathBuf,
    pub(super) reader: Reader,
    /// Bytes of content read so far (decompressed, for a compressed file).
    pub(super) offset: u64,
    /// Docker no longer writes it (renamed, compressed or deleted): its end is final.
    pub(super) sealed: bool,
    /// Its first bytes, to recognise it.
    pub(super) head: Vec<u8>,
}

impl Generation {
    /// Opens `listed` (generation `number`) and moves to `offset`; `None` if the path no
    /// longer names that file.
    pub(super) fn open(
        listed: &Listed,
        number: i64,
        offset: u64,
    ) -> io::Result<Option<Generation>> {
        let Some(reader) = Reader::open(listed)? else {
            return Ok(None);
        };
        let mut generation = Generation {
            id: listed.id,
            number,
            path: listed.path.clone(),
            reader,
            offset: 0,
            sealed: listed.compressed,
            head: Vec::new(),
        };
        generation.skip_to(offset)?;
        Ok(Some(generation))
    }

    /// A live file opened as it was created (generation `number`), read from its start.
    pub(super) fn from_file(file: File, path: PathBuf, number: i64) -> io::Result<Generation> {
        Ok(Generation {
            id: FileId::of(&file.metadata()?),
            number,
            path,
            reader: Reader::Plain(file),
            offset: 0,
            sealed: false,
            head: Vec::new(),
        })
    }

    /// Moves to `offset` (seeks a plain file; decompresses and discards for a compressed one),
    /// keeping the head.
    pub(super) fn skip_to(&mut self, offset: u64) -> io::Result<()> {
        match &mut self.reader {
            Reader::Plain(_) if offset == 0 => {}
            Reader::Plain(file) => {
                let mut head = vec![0; HEAD_BYTES];
                let read = file.read_at(&mut head, 0)?;
                head.truncate(read);
                self.head = head;
                file.seek(SeekFrom::Start(offset))?;
                self.offset = offset;
            }
            Reader::Gzip(_) => {
                let mut scratch = vec![0; 64 * 1024];
                while self.offset < offset {
                    let want = (offset - self.offset).min(scratch.len() as u64) as usize;
                    let read = self.read(&mut scratch[..want])?;
                    if read == 0 {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads into `out`; keeps the head while it is being read.
    pub(super) fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let read = self.reader.read(out)?;
        if self.head.len() < HEAD_BYTES && self.offset == self.head.len() as u64 {
            let take = read.min(HEAD_BYTES - self.head.len());
            self.head.extend_from_slice(&out[..take]);
        }
        self.offset += read as u64;
        Ok(read)
    }

    /// For the live file: whether Docker truncated it (it is shorter than what was read, or
    /// starts with other bytes).
    pub(super) fn is_truncated(&self) -> io::Result<bool> {
        let Reader::Plain(file) = &self.reader else {
            return Ok(false);
        };
        if file.metadata()?.len() < self.offset {
            return Ok(true);
        }
        let mut head = vec![0; self.head.len()];
        let read = file.read_at(&mut head, 0)?;
        Ok(read < head.len() || head != self.head)
    }

    /// Its first bytes as they are now (read again from a plain file: the head kept while
    /// reading may be shorter).
    pub(super) fn current_head(&self) -> Vec<u8> {
        match &self.reader {
            Reader::Plain(file) if self.head.len() < HEAD_BYTES => {
                let mut head = vec![0; HEAD_BYTES];
                let read = file.read_at(&mut head, 0).unwrap_or(0);
                head.truncate(read);
                head
            }
            _ => self.head.clone(),
        }
    }

    /// Starts over at the beginning (after a truncation).
    pub(super) fn rewind(&mut self) -> io::Result<()> {
        if let Reader::Plain(file) = &mut self.reader {
            file.seek(SeekFrom::Start(0))?;
        }
        self.offset = 0;
        self.head.clear();
        Ok(())
    }
}

/// Whether `head` starts with `known` (a file's first bytes): the same content.
pub(super) fn is_copy(head: &[u8], known: &[u8]) -> bool {
    !known.is_empty() && head.len() >= known.len() && head[..known.len()] == *known
}

/// The first [`HEAD_BYTES`] of a listed file's content (decompressed for a compressed file;
/// fewer if it is shorter); `None` if its path no longer names that file.
pub(super) fn file_head(listed: &Listed) -> io::Result<Option<Vec<u8>>> {
    let Some(reader) = Reader::open(listed)? else {
        return Ok(None);
    };
    let mut head = Vec::with_capacity(HEAD_BYTES);
    // A file still being written may end early: what was read is enough to compare.
    let _ = reader.take(HEAD_BYTES as u64).read_to_end(&mut head);
    Ok(Some(head))
}
