//! One agent per data dir: an exclusive `flock(2)` on `<data_dir>/log-capturer.lock`, taken at
//! start and held for the life of the process.
//!
//! Two agents on one data dir would both read and write `checkpoints.json`, the disk buffers and
//! the default file sink, and every line would be captured twice. The lock is advisory and tied
//! to the open file: the kernel releases it when the process ends, however it ends (`kill -9`
//! included), so a stale lock file never blocks a restart. The holder writes its pid into the
//! file so that a second agent can name it.

use std::{
    fmt,
    fs::{self, File, OpenOptions},
    io::{self, Read},
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
};

/// The lock file's name inside the data dir.
pub(crate) const LOCK_FILE: &str = "log-capturer.lock";

/// The held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub(crate) struct DataDirLock {
    /// Holds the `flock`: closing it releases the lock.
    _file: File,
    /// The data dir, absolute and with symlinks resolved.
    dir: PathBuf,
}

/// Why the lock was not taken.
#[derive(Debug)]
pub(crate) enum LockError {
    /// Another process holds it.
    Held {
        dir: PathBuf,
        /// The pid the holder wrote, if it could be read.
        holder: Option<u32>,
    },
    /// The data dir or the lock file could not be created or locked.
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

impl fmt::Display for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::Held { dir, holder } => {
                let holder = holder.map_or("pid unknown".to_owned(), |pid| format!("pid {pid}"));
                write!(
                    f,
                    "the data dir {} is in use by another log-capturer ({holder}, holding {}); \
                     one agent per data dir: stop that one or give this one another --data-dir",
                    dir.display(),
                    dir.join(LOCK_FILE).display()
                )
            }
            LockError::Io {
                action,
                path,
                source,
            } => write!(f, "cannot {action} {}: {source}", path.display()),
        }
    }
}

impl std::error::Error for LockError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LockError::Held { .. } => None,
            LockError::Io { source, .. } => Some(source),
        }
    }
}

impl DataDirLock {
    /// Creates `data_dir` if needed, resolves it to an absolute path and takes its lock without
    /// waiting; on success the file holds this process's pid.
    pub(crate) fn acquire(data_dir: &Path) -> Result<DataDirLock, LockError> {
        let io_error = |action, path: &Path| {
            let path = path.to_owned();
            move |source| LockError::Io {
                action,
                path,
                source,
            }
        };
        fs::create_dir_all(data_dir).map_err(io_error("create the data dir", data_dir))?;
        let dir = fs::canonicalize(data_dir).map_err(io_error("resolve the data dir", data_dir))?;
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_error("open the lock file", &path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let holder = read_pid(&mut file);
                return Err(LockError::Held { dir, holder });
            }
            Err(fs::TryLockError::Error(source)) => {
                return Err(io_error("lock", &path)(source));
            }
        }
        write_pid(&file).map_err(io_error("write the pid into", &path))?;
        Ok(DataDirLock { _file: file, dir })
    }

    /// The data dir, absolute and with symlinks resolved.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Replaces the file's content with this process's pid (a stale pid may be there from a
/// holder that was killed).
fn write_pid(file: &File) -> io::Result<()> {
    let pid = format!("{}\n", std::process::id());
    file.set_len(0)?;
    file.write_all_at(pid.as_bytes(), 0)
}

/// The holder's pid; `None` when it has not written it yet (it locks first, then writes).
fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.by_ref().take(64).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_dir_is_refused_and_names_the_holder() {
        let parent = tempfile::tempdir().unwrap();
        let data_dir = parent.path().join("nested").join("data");
        let first = DataDirLock::acquire(&data_dir).unwrap();
        assert!(first.dir().is_absolute());
        let written = fs::read_to_string(data_dir.join(LOCK_FILE)).unwrap();
        assert_eq!(written, format!("{}\n", std::process::id()));

        // flock locks belong to the open file, so a second open in this process conflicts too.
        let error = DataDirLock::acquire(&data_dir).unwrap_err();
        match &error {
            LockError::Held { dir, holder } => {
                assert_eq!(dir, first.dir());
                assert_eq!(*holder, Some(std::process::id()));
            }
            LockError::Io { .. } => panic!("expected Held, got {error}"),
        }
        let message = error.to_string();
        assert!(
            message.contains(&first.dir().display().to_string()),
            "{message}"
        );
        assert!(
            message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );

        drop(first);
        let again = DataDirLock::acquire(&data_dir).unwrap();
        assert_eq!(
            fs::read_to_string(again.dir().join(LOCK_FILE)).unwrap(),
            format!("{}\n", std::process::id())
        );
    }

    #[test]
    fn a_data_dir_path_is_resolved_and_a_stale_pid_is_replaced() {
        let parent = tempfile::tempdir().unwrap();
        fs::write(parent.path().join(LOCK_FILE), "999999999\nleftover").unwrap();
        let roundabout = parent
            .path()
            .join(".")
            .join("..")
            .join(parent.path().file_name().unwrap());
        let lock = DataDirLock::acquire(&roundabout).unwrap();
        assert_eq!(lock.dir(), fs::canonicalize(parent.path()).unwrap());
        assert_eq!(
            fs::read_to_string(parent.path().join(LOCK_FILE)).unwrap(),
            format!("{}\n", std::process::id())
        );
    }

    #[test]
    fn an_unusable_data_dir_is_an_io_error_naming_the_path() {
        let parent = tempfile::tempdir().unwrap();
        let file = parent.path().join("not-a-dir");
        fs::write(&file, "").unwrap();
        let error = DataDirLock::acquire(&file.join("data")).unwrap_err();
        assert!(matches!(error, LockError::Io { .. }), "{error}");
        assert!(error.to_string().contains("not-a-dir"), "{error}");
    }
}
