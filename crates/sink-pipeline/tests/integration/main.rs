//! Integration tests of the pipeline through its public API: file sink, disk buffer,
//! acknowledgements, batching and reloads.

mod acks;
mod disk_buffer;
mod file_sink;
mod reload;
mod support;
