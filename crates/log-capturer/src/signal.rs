//! The one place that listens for process signals: SIGINT and SIGTERM stop, SIGHUP reloads.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// Resolves on the first SIGINT or SIGTERM, returning its name.
pub(crate) async fn shutdown_signal() -> std::io::Result<&'static str> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let name = tokio::select! {
        _ = interrupt.recv() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
    };
    Ok(name)
}

/// `SIGHUP`, the reload request. Listening replaces the signal's default action (terminate the
/// process) for the rest of the process's life, so call it before anything slow at start.
pub(crate) fn reload_signals() -> std::io::Result<Signal> {
    signal(SignalKind::hangup())
}
