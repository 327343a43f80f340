//! Follows the file sink's active file, line by line, across size-based rotations.
//!
//! The file sink rotates by renaming `containers.jsonl` to `containers.jsonl.1` and opening a new
//! active file. The tail keeps its open handle on the old file, so after a rotation it first reads
//! that file to its end (the sink finished writing it before renaming it) and only then moves to
//! the next one, which it notices by the path's inode changing. When the sink rotated more than
//! once meanwhile (a fast writer), the next file is the one numbered just below where the file it
//! held is now, not the active file. A tail made with [`FileTail::from_oldest`] starts at the
//! oldest rotated file if the sink rotated before it first looked (a fresh data dir: it then
//! reads everything the sink wrote).

use std::{
    fs::File,
    io::{ErrorKind, Read},
    os::unix::fs::MetadataExt,
    path::PathBuf,
};

use anyhow::{Context, Result};

/// How much one `read` asks for.
const READ_CHUNK: usize = 1 << 20;
/// Rotated files looked through for the one the tail held (more than the sink keeps).
const MAX_ROTATED: u32 = 16;

/// A reader of complete lines appended to one path.
#[derive(Debug)]
pub struct FileTail {
    path: PathBuf,
    file: Option<(File, u64)>,
    /// Bytes after the last newline seen: a line still being written.
    pending: Vec<u8>,
    buffer: Vec<u8>,
    /// Partial lines left at the end of a rotated file (should stay 0).
    truncated_lines: u64,
    /// Whether a file was opened yet (or the tail starts at the active file).
    started: bool,
}

impl FileTail {
    /// A tail of `path`, which need not exist yet.
    pub fn new(path: PathBuf) -> FileTail {
        FileTail {
            path,
            file: None,
            pending: Vec::new(),
            buffer: vec![0; READ_CHUNK],
            truncated_lines: 0,
            started: true,
        }
    }

    /// A tail of everything the sink writes to `path` and rotates: it starts at the oldest
    /// rotated file, if any, when it first looks.
    pub fn from_oldest(path: PathBuf) -> FileTail {
        FileTail {
            started: false,
            ..FileTail::new(path)
        }
    }

    /// Partial lines found at the end of rotated files.
    pub fn truncated_lines(&self) -> u64 {
        self.truncated_lines
    }

    /// Reads everything appended since the last call and hands each complete line (without its
    /// newline) to `on_line`; returns how many lines that was.
    pub fn poll(&mut self, mut on_line: impl FnMut(&[u8])) -> Result<u64> {
        let mut lines = 0;
        loop {
            if !self.started {
                self.file = self.open_oldest_rotated();
                self.started = self.file.is_some();
            }
            if self.file.is_none() {
                match File::open(&self.path) {
                    Ok(file) => {
                        let inode = file.metadata()?.ino();
                        self.file = Some((file, inode));
                        self.started = true;
                    }
                    Err(error) if error.kind() == ErrorKind::NotFound => return Ok(lines),
                    Err(error) => {
                        return Err(error).with_context(|| format!("open {}", self.path.display()));
                    }
                }
            }
            let Some((file, inode)) = self.file.as_mut() else {
                return Ok(lines);
            };
            loop {
                let read = file
                    .read(&mut self.buffer)
                    .with_context(|| format!("read {}", self.path.display()))?;
                if read == 0 {
                    break;
                }
                lines += split_lines(&mut self.pending, &self.buffer[..read], &mut on_line);
            }
            // At the end of the file: has the path moved on to a new file?
            match std::fs::metadata(&self.path) {
                Ok(metadata) if metadata.ino() != *inode => {
                    let held = *inode;
                    if !self.pending.is_empty() {
                        self.truncated_lines += 1;
                        self.pending.clear();
                    }
                    // `None`: the active file is next.
                    self.file = self.open_after(held);
                }
                _ => return Ok(lines),
            }
        }
    }
}

impl FileTail {
    fn rotated(&self, number: u32) -> PathBuf {
        let mut path = self.path.clone().into_os_string();
        path.push(format!(".{number}"));
        PathBuf::from(path)
    }

    /// The oldest rotated file, if the sink rotated already.
    fn open_oldest_rotated(&self) -> Option<(File, u64)> {
        let oldest = (1..=MAX_ROTATED)
            .rev()
            .find(|&number| self.rotated(number).exists())?;
        let file = File::open(self.rotated(oldest)).ok()?;
        let inode = file.metadata().ok()?.ino();
        Some((file, inode))
    }

    /// The rotated file written after the one with inode `held`, if that one is still a rotated
    /// file above `.1` (checked again after the open, so a rotation meanwhile is not skipped).
    fn open_after(&self, held: u64) -> Option<(File, u64)> {
        let inode_at = |number: u32| {
            std::fs::metadata(self.rotated(number))
                .ok()
                .map(|metadata| metadata.ino())
        };
        for _ in 0..3 {
            let number = (1..=MAX_ROTATED).find(|&number| inode_at(number) == Some(held))?;
            if number == 1 {
                return None;
            }
            let file = File::open(self.rotated(number - 1)).ok()?;
            let inode = file.metadata().ok()?.ino();
            if inode_at(number) == Some(held) {
                return Some((file, inode));
            }
        }
        None
    }
}

/// Appends `data` to `pending` and hands out every complete line; returns how many.
fn split_lines(pending: &mut Vec<u8>, data: &[u8], on_line: &mut impl FnMut(&[u8])) -> u64 {
    let mut lines = 0;
    let mut rest = data;
    // memchr: this runs beside the capturer in benches, in a debug build; a byte loop there
    // costs seconds of CPU per million lines and slows what it measures.
    while let Some(newline) = memchr::memchr(b'\n', rest) {
        if pending.is_empty() {
            on_line(&rest[..newline]);
        } else {
            pending.extend_from_slice(&rest[..newline]);
            on_line(pending);
            pending.clear();
        }
        lines += 1;
        rest = &rest[newline + 1..];
    }
    pending.extend_from_slice(rest);
    lines
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::FileTail;

    #[test]
    fn lines_are_followed_across_partial_writes_and_rotation() {
        let dir = std::env::temp_dir().join(format!("xtask-tail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("containers.jsonl");
        let mut tail = FileTail::new(path.clone());
        let mut seen = Vec::new();
        assert_eq!(tail.poll(|line| seen.push(line.to_vec())).unwrap(), 0);

        let mut file = std::fs::File::create(&path).unwrap();
        file.write_all(b"one\ntw").unwrap();
        assert_eq!(tail.poll(|line| seen.push(line.to_vec())).unwrap(), 1);
        file.write_all(b"o\nthree\n").unwrap();
        std::fs::rename(&path, dir.join("containers.jsonl.1")).unwrap();
        std::fs::write(&path, b"four\n").unwrap();
        assert_eq!(tail.poll(|line| seen.push(line.to_vec())).unwrap(), 3);
        assert_eq!(seen, [&b"one"[..], b"two", b"three", b"four"]);
        assert_eq!(tail.truncated_lines(), 0);

        // Three rotations between two polls: every file is read, in order.
        let rotate = |content: &[u8]| {
            for number in (1..=4).rev() {
                let from = dir.join(format!("containers.jsonl.{number}"));
                if from.exists() {
                    std::fs::rename(&from, dir.join(format!("containers.jsonl.{}", number + 1)))
                        .unwrap();
                }
            }
            std::fs::rename(&path, dir.join("containers.jsonl.1")).unwrap();
            std::fs::write(&path, content).unwrap();
        };
        rotate(b"five\n");
        rotate(b"six\n");
        rotate(b"seven\n");
        assert_eq!(tail.poll(|line| seen.push(line.to_vec())).unwrap(), 3);
        assert_eq!(&seen[4..], [&b"five"[..], b"six", b"seven"]);

        // A tail that looks only after rotations starts at the oldest file.
        let mut late = FileTail::from_oldest(path.clone());
        let mut all = Vec::new();
        assert_eq!(late.poll(|line| all.push(line.to_vec())).unwrap(), 7);
        assert_eq!(all, seen);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
