//! Integration tests of the pipeline through its public API: file sink, disk buffer,
//! acknowledgements and batching.

mod acks;
mod disk_buffer;
mod file_sink;
mod support;
