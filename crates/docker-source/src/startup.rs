//! What to read of each container found at the agent's start, given what the previous run knew.
//!
//! An agent that starts with no state at all (no usable `checkpoints.json`) follows
//! `read_from` for the containers already running, as it always did. Any later start is a return
//! from downtime (an upgrade, a crash, a host reboot), and what happened meanwhile is read:
//!
//! | container | running | stopped |
//! |---|---|---|
//! | has an entry | follow from its cursors | drain from its cursors once, unless it was already read to this very stop (`drained_finished_at` = `State.FinishedAt`) |
//! | no entry, created after the boundary | follow from its first line | drain from its first line (it ran while the agent was away) |
//! | no entry, created before the boundary | follow from the boundary | drain from the boundary if it stopped after it, else nothing |
//!
//! The boundary is the last time the previous run saw the daemon (`daemon_seen_at` in the
//! checkpoint file, rewritten at least every few seconds while it did, so also after `kill -9`),
//! less [`BOUNDARY_MARGIN`] for the events that were still on their way when it was written.
//! Every container the agent monitors gets an entry at once, so "no entry" means "never
//! monitored": a container created after the boundary was never seen, and one created before it
//! was not running while the agent watched (never started, stopped before the first start, or
//! excluded by filters that have changed since). Reading such a container from the boundary
//! delivers what it wrote while the agent was away and never anything the agent already
//! delivered (it delivered nothing of it).

use std::time::Duration;

use capture_core::Position;

use tracing::info;

use crate::{
    ReadFrom,
    checkpoint::{Checkpoints, ContainerCheckpoint},
};

/// How much earlier than the recorded boundary the agent assumes it may have stopped seeing
/// containers: the events that were still being processed when the boundary was written.
/// Reading from earlier costs nothing in duplicates (a container without an entry had nothing
/// delivered).
pub(crate) const BOUNDARY_MARGIN: Duration = Duration::from_secs(10);

/// What the agent knows about its own past when it starts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StartState {
    /// No usable checkpoint file: the very first start, where `read_from` applies.
    pub(crate) first_start: bool,
    pub(crate) read_from: ReadFrom,
    /// This agent's start (nanoseconds since the epoch): the `read_from = "end"` floor.
    pub(crate) started_at_nanos: i64,
    /// The last time the previous run saw the daemon (nanoseconds), if it ever did.
    pub(crate) boundary_nanos: Option<i64>,
}

impl StartState {
    /// What the loaded checkpoints tell about the agent's past; logs it.
    pub(crate) fn new(
        checkpoints: &Checkpoints,
        read_from: ReadFrom,
        started_at_nanos: i64,
    ) -> StartState {
        let state = StartState {
            first_start: checkpoints.is_first_start(),
            read_from,
            started_at_nanos,
            boundary_nanos: checkpoints.previous_boundary_nanos(),
        };
        match state.boundary_nanos {
            Some(boundary) if !state.first_start => info!(
                last_seen_daemon = %capture_core::format_rfc3339_nanos(boundary),
                "starting from saved state: what happened since is read"
            ),
            _ => info!(read_from = ?read_from, "first start: no saved state"),
        }
        state
    }
}

/// What the daemon says about a container (its inspection), in nanoseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Observed {
    pub(crate) running: bool,
    pub(crate) created_nanos: Option<i64>,
    /// `State.StartedAt`; `None` if the container never started.
    pub(crate) started_nanos: Option<i64>,
    /// `State.FinishedAt`; `None` if the container never stopped.
    pub(crate) finished_nanos: Option<i64>,
}

/// The decision for one container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StartPlan {
    /// Monitor it from `start`: follow it if it runs, else drain what it has and complete.
    Read {
        start: ContainerCheckpoint,
        why: &'static str,
    },
    /// Nothing of it is to be read now.
    Skip { why: &'static str },
}

/// Everything at or before `nanos` counts as delivered.
pub(crate) fn floor(nanos: i64) -> ContainerCheckpoint {
    ContainerCheckpoint {
        streams: [Some(Position::new(nanos, u32::MAX)); 3].into(),
        read_through_nanos: Some(nanos),
        drained_finished_at_nanos: None,
    }
}

/// Decides what to read of a container found by the first listing of this run.
pub(crate) fn plan(
    state: &StartState,
    entry: Option<ContainerCheckpoint>,
    observed: &Observed,
) -> StartPlan {
    if let Some(entry) = entry {
        return with_entry(entry, observed);
    }
    if observed.started_nanos.is_none() && !observed.running {
        return StartPlan::Skip {
            why: "never started",
        };
    }
    match (state.first_start, state.boundary_nanos) {
        (false, Some(boundary)) => from_boundary(boundary, observed),
        // First start, or a state that never saw the daemon.
        _ => first_start(state, observed),
    }
}

fn with_entry(entry: ContainerCheckpoint, observed: &Observed) -> StartPlan {
    if observed.running {
        return StartPlan::Read {
            start: entry,
            why: "running: from its cursors",
        };
    }
    if entry.drained_finished_at_nanos.is_some()
        && entry.drained_finished_at_nanos == observed.finished_nanos
    {
        return StartPlan::Skip {
            why: "stopped and already read to its end",
        };
    }
    StartPlan::Read {
        start: entry,
        why: "stopped while the agent was away: drained from its cursors",
    }
}

fn first_start(state: &StartState, observed: &Observed) -> StartPlan {
    if !observed.running {
        return StartPlan::Skip {
            why: "stopped at the first start",
        };
    }
    match state.read_from {
        ReadFrom::Beginning => StartPlan::Read {
            start: ContainerCheckpoint::default(),
            why: "first start, read_from = beginning",
        },
        // Everything before the agent's start counts as delivered.
        ReadFrom::End => StartPlan::Read {
            start: floor(state.started_at_nanos.saturating_sub(1)),
            why: "first start, read_from = end",
        },
    }
}

fn from_boundary(boundary: i64, observed: &Observed) -> StartPlan {
    let margin = i64::try_from(BOUNDARY_MARGIN.as_nanos()).unwrap_or(i64::MAX);
    let cut = boundary.saturating_sub(margin);
    // A container whose creation time is unknown is treated as new: reading more is safe.
    if observed.created_nanos.is_none_or(|created| created >= cut) {
        return StartPlan::Read {
            start: ContainerCheckpoint::default(),
            why: "created while the agent was away: from its first line",
        };
    }
    if observed.running
        || observed
            .finished_nanos
            .is_some_and(|finished| finished >= cut)
    {
        return StartPlan::Read {
            start: floor(cut.saturating_sub(1)),
            why: "never monitored: from the last time the agent saw the daemon",
        };
    }
    StartPlan::Skip {
        why: "never monitored and stopped before the agent last saw the daemon",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: i64 = 1_000_000_000;
    /// The previous run last saw the daemon at t = 1 000 s.
    const BOUNDARY: i64 = 1_000 * SECOND;
    /// This run starts at t = 2 000 s.
    const STARTED: i64 = 2_000 * SECOND;

    fn later_start() -> StartState {
        StartState {
            first_start: false,
            read_from: ReadFrom::End,
            started_at_nanos: STARTED,
            boundary_nanos: Some(BOUNDARY),
        }
    }

    fn running(created: i64) -> Observed {
        Observed {
            running: true,
            created_nanos: Some(created),
            started_nanos: Some(created),
            finished_nanos: None,
        }
    }

    fn stopped(created: i64, finished: i64) -> Observed {
        Observed {
            running: false,
            created_nanos: Some(created),
            started_nanos: Some(created),
            finished_nanos: Some(finished),
        }
    }

    fn cursor_entry(drained: Option<i64>) -> ContainerCheckpoint {
        ContainerCheckpoint {
            streams: [Some(Position::new(900 * SECOND, 3)), None, None].into(),
            read_through_nanos: Some(898 * SECOND),
            drained_finished_at_nanos: drained,
        }
    }

    fn start_of(plan: StartPlan) -> ContainerCheckpoint {
        match plan {
            StartPlan::Read { start, .. } => start,
            StartPlan::Skip { why } => panic!("expected a read, got a skip: {why}"),
        }
    }

    fn cut() -> i64 {
        BOUNDARY - i64::try_from(BOUNDARY_MARGIN.as_nanos()).unwrap()
    }

    #[test]
    fn read_from_applies_only_to_a_first_start() {
        for (read_from, expected) in [
            (ReadFrom::End, floor(STARTED - 1)),
            (ReadFrom::Beginning, ContainerCheckpoint::default()),
        ] {
            let first = StartState {
                first_start: true,
                read_from,
                started_at_nanos: STARTED,
                boundary_nanos: None,
            };
            assert_eq!(
                start_of(plan(&first, None, &running(10 * SECOND))),
                expected
            );
            assert!(matches!(
                plan(&first, None, &stopped(10 * SECOND, 20 * SECOND)),
                StartPlan::Skip { .. }
            ));
            // On a later start, read_from no longer matters.
            let later = StartState {
                read_from,
                ..later_start()
            };
            assert_eq!(
                start_of(plan(&later, None, &running(1_500 * SECOND))),
                ContainerCheckpoint::default()
            );
        }
    }

    #[test]
    fn a_container_created_while_the_agent_was_away_is_read_from_its_first_line() {
        let state = later_start();
        for observed in [
            running(1_500 * SECOND),
            stopped(1_500 * SECOND, 1_600 * SECOND),
            // Within the margin before the boundary: its start event may not have been handled.
            running(cut()),
            stopped(BOUNDARY - SECOND, 1_001 * SECOND),
        ] {
            assert_eq!(
                start_of(plan(&state, None, &observed)),
                ContainerCheckpoint::default(),
                "{observed:?}"
            );
        }
    }

    #[test]
    fn a_container_never_monitored_but_older_than_the_boundary_is_read_from_the_boundary() {
        let state = later_start();
        let from_boundary = floor(cut() - 1);
        // Excluded before, included now, or started for the first time while the agent was away.
        assert_eq!(
            start_of(plan(&state, None, &running(10 * SECOND))),
            from_boundary
        );
        assert_eq!(
            start_of(plan(&state, None, &stopped(10 * SECOND, 1_500 * SECOND))),
            from_boundary
        );
        // It stopped before the agent last looked: it wrote nothing while the agent was away.
        assert!(matches!(
            plan(&state, None, &stopped(10 * SECOND, 500 * SECOND)),
            StartPlan::Skip { .. }
        ));
        // Created but never started.
        let created_only = Observed {
            running: false,
            created_nanos: Some(1_500 * SECOND),
            started_nanos: None,
            finished_nanos: None,
        };
        assert!(matches!(
            plan(&state, None, &created_only),
            StartPlan::Skip { .. }
        ));
    }

    #[test]
    fn a_container_with_a_cursor_is_drained_once_after_a_stop_the_agent_did_not_see() {
        let state = later_start();
        // Running: followed from its cursor.
        assert_eq!(
            start_of(plan(
                &state,
                Some(cursor_entry(None)),
                &running(10 * SECOND)
            )),
            cursor_entry(None)
        );
        // Exited while the agent was away: drained from its cursor.
        assert_eq!(
            start_of(plan(
                &state,
                Some(cursor_entry(None)),
                &stopped(10 * SECOND, 1_500 * SECOND)
            )),
            cursor_entry(None)
        );
        // Already read to the end of this very stop: nothing to do.
        let drained = cursor_entry(Some(950 * SECOND));
        assert!(matches!(
            plan(&state, Some(drained), &stopped(10 * SECOND, 950 * SECOND)),
            StartPlan::Skip { .. }
        ));
        // Read to the end of an earlier stop, then restarted and stopped again while away.
        assert_eq!(
            start_of(plan(
                &state,
                Some(drained),
                &stopped(10 * SECOND, 1_500 * SECOND)
            )),
            drained
        );
    }

    #[test]
    fn a_state_that_never_saw_the_daemon_is_a_first_start() {
        let state = StartState {
            boundary_nanos: None,
            ..later_start()
        };
        assert_eq!(
            start_of(plan(&state, None, &running(10 * SECOND))),
            floor(STARTED - 1)
        );
    }
}
