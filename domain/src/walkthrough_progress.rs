//! One end user's progress through one walkthrough (stream id `{walkthrough}:{end user}`), kept
//! across MCP sessions and servers. A run is pinned to the version it started on: its step list
//! travels in `WalkthroughStarted`, so a newer version (even one without the user's current
//! step) never strands anyone; the next start takes the newest version.
//!
//! `StepCompleted` carries what analytics need (server, version, step and its neighbours, time
//! on the step), so the funnel and sankey projections need nothing else.

use crate::{Aggregate, DomainEvent};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The stream id of an end user's progress on a walkthrough.
pub fn stream_id(walkthrough_id: Uuid, end_user_id: Uuid) -> String {
    format!("{walkthrough_id}:{end_user_id}")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub version: u32,
    pub steps: Vec<Uuid>,
    /// Index of the step the user is on; `steps.len()` once completed.
    pub current: usize,
    pub server_id: Uuid,
    pub started_at: DateTime<Utc>,
    /// When the current step was handed out: time on a step counts from here.
    pub shown_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl Run {
    pub fn current_step(&self) -> Option<Uuid> {
        self.steps.get(self.current).copied()
    }

    pub fn is_completed(&self) -> bool {
        self.completed_at.is_some()
    }
}

#[derive(Debug, Default, Clone)]
pub struct WalkthroughProgress {
    pub org_id: Option<Uuid>,
    pub walkthrough_id: Option<Uuid>,
    pub end_user_id: Option<Uuid>,
    pub run: Option<Run>,
}

impl WalkthroughProgress {
    /// The events after which nothing earlier matters: a start (or a run carried over from a
    /// merged end user) replaces the whole state, so loading may begin at the stream's last one
    /// (restarts never make loads slower).
    pub fn reset_events() -> &'static [&'static str] {
        RESET_EVENTS
    }

    /// How far this run got, for choosing between two runs of one walkthrough when two end
    /// users are merged: a completed run beats any other, then the one with more steps done.
    pub fn reach(&self) -> Option<(bool, usize)> {
        self.run.as_ref().map(|r| (r.is_completed(), r.current))
    }
}

/// The names of [`WalkthroughProgress::reset_events`] (a test checks them against the variants).
const RESET_EVENTS: &[&str] = &["WalkthroughStarted", "ProgressCarriedOver"];

/// The version a new run starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartingVersion {
    pub version: u32,
    pub steps: Vec<Uuid>,
}

#[derive(Debug, Clone)]
pub enum ProgressCommand {
    /// `select_walkthrough`: start, resume (no event) or restart.
    Select {
        org_id: Uuid,
        walkthrough_id: Uuid,
        end_user_id: Uuid,
        server_id: Uuid,
        resume_if_exists: bool,
        newest: StartingVersion,
        at: DateTime<Utc>,
    },
    /// `next_walkthrough_step`: completes the step the caller was on. `expected_step_id` is the
    /// step the caller believes is current; another one is refused (no skipping on a stale view).
    CompleteStep {
        expected_step_id: Option<Uuid>,
        server_id: Uuid,
        at: DateTime<Utc>,
    },
    /// Identity stitching: `from` (the merged end user's progress on this walkthrough) went
    /// further than this stream's, so this end user (the survivor) continues from there.
    /// Nothing is recorded when this stream's run went as far or further.
    CarryOver {
        org_id: Uuid,
        walkthrough_id: Uuid,
        end_user_id: Uuid,
        from_end_user_id: Uuid,
        from: Run,
    },
}

/// Where the previous run was left when a user restarted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeftRun {
    pub version: u32,
    /// The step they were on; `None` when that run was complete.
    #[serde(default)]
    pub step_id: Option<Uuid>,
}

#[derive(
    Debug,
    Clone,
    PartialEq,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::VariantNames,
    strum::EnumDiscriminants,
)]
#[strum_discriminants(name(ProgressEventType), derive(strum::IntoStaticStr))]
pub enum ProgressEvent {
    WalkthroughStarted {
        org_id: Uuid,
        walkthrough_id: Uuid,
        end_user_id: Uuid,
        server_id: Uuid,
        version: u32,
        steps: Vec<Uuid>,
        /// Set when this start is a restart.
        #[serde(default)]
        restarted_from: Option<LeftRun>,
        #[serde(with = "crate::time::rfc3339")]
        at: DateTime<Utc>,
    },
    StepCompleted {
        walkthrough_id: Uuid,
        end_user_id: Uuid,
        server_id: Uuid,
        version: u32,
        step_id: Uuid,
        /// 0-based position in the run's version.
        step_index: u32,
        step_count: u32,
        #[serde(default)]
        previous_step_id: Option<Uuid>,
        /// `None`: this was the last step.
        #[serde(default)]
        next_step_id: Option<Uuid>,
        time_on_step_ms: u64,
        #[serde(with = "crate::time::rfc3339")]
        at: DateTime<Utc>,
    },
    WalkthroughCompleted {
        walkthrough_id: Uuid,
        end_user_id: Uuid,
        server_id: Uuid,
        version: u32,
        duration_ms: u64,
        #[serde(with = "crate::time::rfc3339")]
        at: DateTime<Utc>,
    },
    /// The run of a merged end user, carried over to the survivor because it went further:
    /// replaces the whole state, like a start. Not a start, step or completion for analytics
    /// (those were counted when the merged end user made them).
    ProgressCarriedOver {
        org_id: Uuid,
        walkthrough_id: Uuid,
        end_user_id: Uuid,
        from_end_user_id: Uuid,
        server_id: Uuid,
        version: u32,
        steps: Vec<Uuid>,
        /// Steps completed.
        current: u32,
        #[serde(with = "crate::time::rfc3339")]
        started_at: DateTime<Utc>,
        #[serde(with = "crate::time::rfc3339")]
        shown_at: DateTime<Utc>,
        #[serde(default, with = "crate::time::rfc3339_option")]
        completed_at: Option<DateTime<Utc>>,
    },
}

impl DomainEvent for ProgressEvent {
    fn event_type(&self) -> &'static str {
        self.into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProgressError {
    #[error("no walkthrough is selected; call select_walkthrough first")]
    NoWalkthroughSelected,
    #[error("this walkthrough is already complete")]
    AlreadyCompleted,
    #[error("that step is not the current one")]
    StaleStep { current_step_id: Uuid },
    #[error("the walkthrough has no published steps")]
    NoSteps,
}

fn millis_between(from: DateTime<Utc>, to: DateTime<Utc>) -> u64 {
    u64::try_from((to - from).num_milliseconds()).unwrap_or(0)
}

impl Aggregate for WalkthroughProgress {
    const TYPE: &'static str = "walkthrough_progress";
    type Command = ProgressCommand;
    type Event = ProgressEvent;
    type Error = ProgressError;

    fn handle(&self, command: ProgressCommand) -> Result<Vec<ProgressEvent>, ProgressError> {
        match command {
            ProgressCommand::Select {
                org_id,
                walkthrough_id,
                end_user_id,
                server_id,
                resume_if_exists,
                newest,
                at,
            } => {
                let restarted_from = match &self.run {
                    Some(_) if resume_if_exists => return Ok(vec![]),
                    Some(run) => Some(LeftRun {
                        version: run.version,
                        step_id: run.current_step(),
                    }),
                    None => None,
                };
                if newest.steps.is_empty() {
                    return Err(ProgressError::NoSteps);
                }
                Ok(vec![ProgressEvent::WalkthroughStarted {
                    org_id,
                    walkthrough_id,
                    end_user_id,
                    server_id,
                    version: newest.version,
                    steps: newest.steps,
                    restarted_from,
                    at,
                }])
            }
            ProgressCommand::CompleteStep {
                expected_step_id,
                server_id,
                at,
            } => {
                let run = self
                    .run
                    .as_ref()
                    .ok_or(ProgressError::NoWalkthroughSelected)?;
                let Some(step_id) = run.current_step() else {
                    return Err(ProgressError::AlreadyCompleted);
                };
                if let Some(expected) = expected_step_id {
                    if expected != step_id {
                        return Err(ProgressError::StaleStep {
                            current_step_id: step_id,
                        });
                    }
                }
                let (Some(walkthrough_id), Some(end_user_id)) =
                    (self.walkthrough_id, self.end_user_id)
                else {
                    return Err(ProgressError::NoWalkthroughSelected);
                };
                let next_step_id = run.steps.get(run.current + 1).copied();
                let mut events = vec![ProgressEvent::StepCompleted {
                    walkthrough_id,
                    end_user_id,
                    server_id,
                    version: run.version,
                    step_id,
                    step_index: u32::try_from(run.current).unwrap_or(u32::MAX),
                    step_count: u32::try_from(run.steps.len()).unwrap_or(u32::MAX),
                    previous_step_id: run
                        .current
                        .checked_sub(1)
                        .and_then(|i| run.steps.get(i).copied()),
                    next_step_id,
                    time_on_step_ms: millis_between(run.shown_at, at),
                    at,
                }];
                if next_step_id.is_none() {
                    events.push(ProgressEvent::WalkthroughCompleted {
                        walkthrough_id,
                        end_user_id,
                        server_id,
                        version: run.version,
                        duration_ms: millis_between(run.started_at, at),
                        at,
                    });
                }
                Ok(events)
            }
            ProgressCommand::CarryOver {
                org_id,
                walkthrough_id,
                end_user_id,
                from_end_user_id,
                from,
            } => {
                let theirs = Some((from.is_completed(), from.current));
                if self.reach() >= theirs {
                    return Ok(vec![]);
                }
                Ok(vec![ProgressEvent::ProgressCarriedOver {
                    org_id,
                    walkthrough_id,
                    end_user_id,
                    from_end_user_id,
                    server_id: from.server_id,
                    version: from.version,
                    current: u32::try_from(from.current).unwrap_or(u32::MAX),
                    steps: from.steps,
                    started_at: from.started_at,
                    shown_at: from.shown_at,
                    completed_at: from.completed_at,
                }])
            }
        }
    }

    fn apply(&mut self, event: &ProgressEvent) {
        match event {
            ProgressEvent::WalkthroughStarted {
                org_id,
                walkthrough_id,
                end_user_id,
                server_id,
                version,
                steps,
                at,
                ..
            } => {
                self.org_id = Some(*org_id);
                self.walkthrough_id = Some(*walkthrough_id);
                self.end_user_id = Some(*end_user_id);
                self.run = Some(Run {
                    version: *version,
                    steps: steps.clone(),
                    current: 0,
                    server_id: *server_id,
                    started_at: *at,
                    shown_at: *at,
                    completed_at: None,
                });
            }
            ProgressEvent::StepCompleted { server_id, at, .. } => {
                if let Some(run) = &mut self.run {
                    run.current += 1;
                    run.shown_at = *at;
                    run.server_id = *server_id;
                }
            }
            ProgressEvent::WalkthroughCompleted { at, .. } => {
                if let Some(run) = &mut self.run {
                    run.completed_at = Some(*at);
                }
            }
            ProgressEvent::ProgressCarriedOver {
                org_id,
                walkthrough_id,
                end_user_id,
                server_id,
                version,
                steps,
                current,
                started_at,
                shown_at,
                completed_at,
                ..
            } => {
                self.org_id = Some(*org_id);
                self.walkthrough_id = Some(*walkthrough_id);
                self.end_user_id = Some(*end_user_id);
                self.run = Some(Run {
                    version: *version,
                    steps: steps.clone(),
                    current: usize::try_from(*current).unwrap_or(usize::MAX),
                    server_id: *server_id,
                    started_at: *started_at,
                    shown_at: *shown_at,
                    completed_at: *completed_at,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::{given_when, replay};
    use crate::DomainEvent;
    use chrono::TimeZone;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn t(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + seconds, 0).unwrap()
    }

    fn select(resume: bool, version: u32, steps: &[u128], at: i64) -> ProgressCommand {
        ProgressCommand::Select {
            org_id: id(1),
            walkthrough_id: id(2),
            end_user_id: id(3),
            server_id: id(4),
            resume_if_exists: resume,
            newest: StartingVersion {
                version,
                steps: steps.iter().map(|s| id(*s)).collect(),
            },
            at: t(at),
        }
    }

    fn next(expected: Option<u128>, at: i64) -> ProgressCommand {
        ProgressCommand::CompleteStep {
            expected_step_id: expected.map(id),
            server_id: id(4),
            at: t(at),
        }
    }

    fn run(commands: Vec<ProgressCommand>) -> Vec<ProgressEvent> {
        let mut history = Vec::new();
        for command in commands {
            let events = given_when::<WalkthroughProgress>(&history, command).unwrap();
            history.extend(events);
        }
        history
    }

    #[test]
    fn walks_to_the_end_with_times_and_neighbours() {
        let history = run(vec![
            select(true, 1, &[10, 11], 0),
            next(Some(10), 30),
            next(None, 50),
        ]);
        assert_eq!(history.len(), 4);
        assert!(matches!(
            &history[1],
            ProgressEvent::StepCompleted { step_index: 0, previous_step_id: None, next_step_id: Some(n), time_on_step_ms: 30_000, .. } if *n == id(11)
        ));
        assert!(matches!(
            &history[2],
            ProgressEvent::StepCompleted { step_index: 1, previous_step_id: Some(p), next_step_id: None, time_on_step_ms: 20_000, .. } if *p == id(10)
        ));
        assert!(matches!(
            &history[3],
            ProgressEvent::WalkthroughCompleted {
                duration_ms: 50_000,
                ..
            }
        ));
        assert_eq!(
            given_when::<WalkthroughProgress>(&history, next(None, 60)),
            Err(ProgressError::AlreadyCompleted)
        );
    }

    #[test]
    fn a_stale_step_is_refused_with_the_real_one_and_nothing_is_skipped() {
        let history = run(vec![select(true, 1, &[10, 11, 12], 0), next(Some(10), 5)]);
        assert_eq!(
            given_when::<WalkthroughProgress>(&history, next(Some(10), 6)),
            Err(ProgressError::StaleStep {
                current_step_id: id(11)
            })
        );
        assert_eq!(
            given_when::<WalkthroughProgress>(&[], next(None, 1)),
            Err(ProgressError::NoWalkthroughSelected)
        );
    }

    #[test]
    fn replaying_from_the_last_start_gives_the_same_state() {
        let mut history = run(vec![select(true, 1, &[10, 11], 0), next(None, 5)]);
        history.extend(
            given_when::<WalkthroughProgress>(&history, select(false, 2, &[10, 12], 9)).unwrap(),
        );
        history.extend(given_when::<WalkthroughProgress>(&history, next(None, 12)).unwrap());
        let last_start = history
            .iter()
            .rposition(|e| WalkthroughProgress::reset_events().contains(&e.event_type()))
            .unwrap();
        let full = replay::<WalkthroughProgress>(&history);
        let tail = replay::<WalkthroughProgress>(&history[last_start..]);
        assert_eq!(full.run, tail.run);
        assert_eq!(
            (full.org_id, full.walkthrough_id, full.end_user_id),
            (tail.org_id, tail.walkthrough_id, tail.end_user_id)
        );
    }

    #[test]
    fn resuming_records_nothing_and_a_restart_takes_the_newest_version() {
        let history = run(vec![select(true, 1, &[10, 11, 12], 0), next(None, 5)]);
        assert_eq!(
            given_when::<WalkthroughProgress>(&history, select(true, 2, &[10, 12], 9)),
            Ok(vec![])
        );
        // Mid-way on version 1, the run keeps version 1's steps even though step 11 is gone.
        let state = replay::<WalkthroughProgress>(&history);
        assert_eq!(state.run.as_ref().unwrap().current_step(), Some(id(11)));
        let restarted =
            given_when::<WalkthroughProgress>(&history, select(false, 2, &[10, 12], 9)).unwrap();
        assert!(matches!(
            &restarted[0],
            ProgressEvent::WalkthroughStarted { version: 2, restarted_from: Some(LeftRun { version: 1, step_id: Some(s) }), .. } if *s == id(11)
        ));
    }

    #[test]
    fn reset_events_are_variant_names() {
        let started: &str = ProgressEventType::WalkthroughStarted.into();
        let carried: &str = ProgressEventType::ProgressCarriedOver.into();
        assert_eq!(WalkthroughProgress::reset_events(), &[started, carried]);
    }

    fn carry(from: &WalkthroughProgress) -> ProgressCommand {
        ProgressCommand::CarryOver {
            org_id: id(1),
            walkthrough_id: id(2),
            end_user_id: id(30),
            from_end_user_id: id(3),
            from: from.run.clone().unwrap(),
        }
    }

    #[test]
    fn the_further_run_wins_a_merge_and_continues_where_it_was() {
        let further = run(vec![
            select(true, 1, &[10, 11, 12], 0),
            next(None, 5),
            next(None, 7),
        ]);
        let behind = run(vec![select(true, 1, &[10, 11, 12], 0), next(None, 5)]);
        let further_state = replay::<WalkthroughProgress>(&further);
        // Behind (or nowhere): the further run is carried over and replaces the state.
        for given in [behind.clone(), vec![]] {
            let carried = given_when::<WalkthroughProgress>(&given, carry(&further_state)).unwrap();
            assert_eq!(carried.len(), 1);
            let mut after = given.clone();
            after.extend(carried.clone());
            let state = replay::<WalkthroughProgress>(&after);
            assert_eq!(state.run.as_ref().unwrap().current_step(), Some(id(12)));
            assert_eq!(state.end_user_id, Some(id(30)));
            // Loading from the carried-over event on gives the same state.
            assert_eq!(replay::<WalkthroughProgress>(&carried).run, state.run);
            // It continues: the next step completes the walkthrough.
            let done = given_when::<WalkthroughProgress>(&after, next(Some(12), 9)).unwrap();
            assert!(matches!(
                done.last(),
                Some(ProgressEvent::WalkthroughCompleted { .. })
            ));
        }
        // As far or further: nothing is carried.
        assert_eq!(
            given_when::<WalkthroughProgress>(&further, carry(&replay(&behind))),
            Ok(vec![])
        );
        assert_eq!(
            given_when::<WalkthroughProgress>(&further, carry(&further_state)),
            Ok(vec![])
        );
    }
}
