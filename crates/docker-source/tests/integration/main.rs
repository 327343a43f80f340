//! Integration tests against the real Docker daemon (`/var/run/docker.sock` or `$DOCKER_HOST`).
//!
//! Each test labels its containers with a value unique to it and filters on that label, so
//! tests (and test processes) running concurrently never see each other's containers. Containers
//! are removed by drop guards, also when a test fails. Waits poll what the fake pipeline received
//! (or the supervisor's state) with a bounded timeout.

mod api_rotation;
mod capture;
mod downtime;
mod files;
mod harness;
mod leaks;
mod lifecycle;
mod multiline;
mod proxy;
mod reload;
mod removal;
mod resume;
mod rotation;
mod silence;
mod unreadable;
