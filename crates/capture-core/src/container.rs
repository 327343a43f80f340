//! Container identity and metadata.

use std::{collections::BTreeMap, fmt, sync::Arc};

/// A Docker container's full id: 64 lower-case hex digits.
///
/// Cheap to clone (an `Arc<str>`), so it can key maps in the source and the sinks.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerId(Arc<str>);

/// Returned by [`ContainerId::new`] for anything that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidContainerId(pub String);

impl fmt::Display for InvalidContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a full container id (64 hex digits): {:?}", self.0)
    }
}

impl std::error::Error for InvalidContainerId {}

impl ContainerId {
    /// Validates and wraps a full container id. Upper-case hex is folded to lower case.
    pub fn new(id: impl AsRef<str>) -> Result<Self, InvalidContainerId> {
        let id = id.as_ref();
        if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(ContainerId(Arc::from(id.to_ascii_lowercase())))
        } else {
            Err(InvalidContainerId(id.to_owned()))
        }
    }

    /// The full id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 12-digit short id that `docker ps` shows.
    pub fn short(&self) -> &str {
        &self.0[..12]
    }

    /// The supervisor task id of this container's log task: `container_` + the full id.
    pub fn task_id(&self) -> String {
        format!("container_{}", self.0)
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContainerId({})", self.short())
    }
}

impl AsRef<str> for ContainerId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// What the sinks need to know about the container that wrote a line.
///
/// Shared by `Arc` between batches. It is immutable: a rename produces a new `ContainerInfo`,
/// used by the lines read after the rename.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    /// The full container id.
    pub id: ContainerId,
    /// The name without Docker's leading `/`.
    pub name: String,
    /// The image as the container was created with it (`nginx:1.27`).
    pub image: String,
    /// The container's labels.
    pub labels: BTreeMap<String, String>,
    /// Whether the container runs with a TTY (its output is one raw stream).
    pub tty: bool,
}

impl ContainerInfo {
    /// A container with no labels and no TTY; set the public fields for more.
    pub fn new(id: ContainerId, name: impl Into<String>, image: impl Into<String>) -> Self {
        let name = name.into();
        let name = name.strip_prefix('/').map(str::to_owned).unwrap_or(name);
        ContainerInfo {
            id,
            name,
            image: image.into(),
            labels: BTreeMap::new(),
            tty: false,
        }
    }
}
