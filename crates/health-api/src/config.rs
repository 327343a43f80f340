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
    /// The most connections served at once; further connections are closed as soon as they are
    /// accepted. Default 64.
    pub max_connections: usize,
}

impl HealthConfig {
    /// The default listen address, `127.0.0.1:8401`.
    pub const DEFAULT_LISTEN: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 8401);
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            listen: HealthConfig::DEFAULT_LISTEN,
            docker_unreachable_grace: Duration::from_secs(30),
            sink_failure_window: Duration::from_secs(5 * 60),
            max_connections: 64,
        }
    }
}
