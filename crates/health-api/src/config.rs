//! The `[health]` section of the configuration.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The health API's configuration (the `[health]` table).
///
/// Every field has a default, so an empty table (or none) is valid.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// Where the HTTP server listens. Default `127.0.0.1:8401`.
    pub listen: SocketAddr,
    /// How long Docker may be unreachable (connecting or disconnected) before `/health` reports
    /// `unhealthy`. Shorter outages report `degraded`. Default 30 s.
    #[serde(with = "humantime_serde")]
    pub docker_unreachable_grace: Duration,
    /// How long a sink may fail without a single success before `/health` reports `unhealthy`.
    /// Default 5 min.
    #[serde(with = "humantime_serde")]
    pub sink_failure_window: Duration,
    /// The most connections served at once for any path; a connection beyond them is closed
    /// once its first request head is read. Default 64.
    pub max_connections: usize,
    /// Further connections reserved for clients whose first request is `/live` or `/ready`, so a
    /// flood of `/metrics` or `/health` clients cannot starve the probes. Default 8; 0 reserves
    /// none.
    pub probe_connections: usize,
    /// How long writing an answer may stay blocked (the client does not read) before the
    /// connection is closed and its slot freed. Default 10 s.
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
    /// Requests answered on one connection before it is closed (the last answer carries
    /// `Connection: close`). Bounds what a client that pipelines requests can make the agent
    /// render; keep-alive clients simply reconnect. Default 100.
    pub max_requests_per_connection: usize,
}

impl HealthConfig {
    /// The default listen address, `127.0.0.1:8401`.
    pub const DEFAULT_LISTEN: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 8401);

    /// Checks the limits that serde cannot: each must leave the server able to answer.
    pub fn validate(&self) -> crate::Result<()> {
        let invalid = |key, reason: &str| {
            Err(crate::Error::Config {
                key,
                reason: reason.to_owned(),
            })
        };
        if self.max_connections == 0 {
            return invalid("max_connections", "must be at least 1");
        }
        if self.write_timeout.is_zero() {
            return invalid("write_timeout", "must be above zero");
        }
        if self.max_requests_per_connection == 0 {
            return invalid("max_requests_per_connection", "must be at least 1");
        }
        Ok(())
    }
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            listen: HealthConfig::DEFAULT_LISTEN,
            docker_unreachable_grace: Duration::from_secs(30),
            sink_failure_window: Duration::from_secs(5 * 60),
            max_connections: 64,
            probe_connections: 8,
            write_timeout: Duration::from_secs(10),
            max_requests_per_connection: 100,
        }
    }
}
