//! One value per [`LogStream`], indexed by the stream itself.

use std::ops::{Index, IndexMut};

use serde::{Deserialize, Serialize};

use crate::LogStream;

/// One `T` per stream (stdout, stderr, tty), indexed by [`LogStream`]: what an array indexed by
/// [`LogStream::index`] holds, saying so in its type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PerStream<T>([T; 3]);

impl<T> PerStream<T> {
    /// The values of stdout, stderr and tty, in [`LogStream::ALL`]'s order.
    pub const fn new(values: [T; 3]) -> PerStream<T> {
        PerStream(values)
    }

    /// Each stream with its value, in [`LogStream::ALL`]'s order.
    pub fn iter(&self) -> impl Iterator<Item = (LogStream, &T)> {
        LogStream::ALL.into_iter().zip(&self.0)
    }

    /// The values, in [`LogStream::ALL`]'s order.
    pub fn values(&self) -> std::slice::Iter<'_, T> {
        self.0.iter()
    }

    /// The values, in [`LogStream::ALL`]'s order.
    pub fn values_mut(&mut self) -> std::slice::IterMut<'_, T> {
        self.0.iter_mut()
    }

    /// The values as an array indexed by [`LogStream::index`].
    pub fn into_array(self) -> [T; 3] {
        self.0
    }
}

impl<T> From<[T; 3]> for PerStream<T> {
    fn from(values: [T; 3]) -> PerStream<T> {
        PerStream(values)
    }
}

impl<T> Index<LogStream> for PerStream<T> {
    type Output = T;

    fn index(&self, stream: LogStream) -> &T {
        &self.0[stream.index()]
    }
}

impl<T> IndexMut<LogStream> for PerStream<T> {
    fn index_mut(&mut self, stream: LogStream) -> &mut T {
        &mut self.0[stream.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_stream_has_its_own_slot() {
        let mut lines = PerStream::<u64>::default();
        lines[LogStream::Stderr] += 2;
        lines[LogStream::Tty] += 1;
        assert_eq!(lines.into_array(), [0, 2, 1]);
        let listed: Vec<_> = lines.iter().map(|(stream, n)| (stream, *n)).collect();
        assert_eq!(
            listed,
            [
                (LogStream::Stdout, 0),
                (LogStream::Stderr, 2),
                (LogStream::Tty, 1)
            ]
        );
    }
}
