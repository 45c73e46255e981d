//! End users' progress through walkthroughs, driven by the MCP tools `select_walkthrough` and
//! `next_walkthrough_step`.
//!
//! Which walkthrough an end user is "in" (what `next_walkthrough_step` advances when it names
//! none) is a pointer in the write-side key index (`walkthrough_selected`, one row per end
//! user), written in the same transaction as the start, so it is never behind the events.

use crate::keys;
use crate::store::{
    conflict_backoff, CommitError, EventStore, ExecuteError, UnitOfWork, MAX_RETRIES,
};
use chrono::{DateTime, Utc};
use domain::walkthrough_progress::{
    stream_id, ProgressCommand, ProgressError, ProgressEvent, StartingVersion, WalkthroughProgress,
};
use domain::{Aggregate, EventMetadata};
use uuid::Uuid;

type Result<T> = std::result::Result<T, ExecuteError<ProgressError>>;

/// The progress after a command, and what it recorded (nothing for a resume).
#[derive(Debug, Clone)]
pub struct Outcome {
    pub progress: WalkthroughProgress,
    pub events: Vec<ProgressEvent>,
}

fn pointer_key(org_id: Uuid, end_user_id: Uuid) -> String {
    format!("{org_id}/{end_user_id}")
}

/// The walkthrough the end user selected last, if any.
pub async fn selected(
    store: &EventStore,
    org_id: Uuid,
    end_user_id: Uuid,
) -> std::result::Result<Option<Uuid>, crate::StoreError> {
    keys::owner_of(
        store.pool(),
        keys::WALKTHROUGH_SELECTED,
        &pointer_key(org_id, end_user_id),
    )
    .await
}

pub async fn load(
    store: &EventStore,
    walkthrough_id: Uuid,
    end_user_id: Uuid,
) -> std::result::Result<WalkthroughProgress, crate::StoreError> {
    Ok(store
        .load::<WalkthroughProgress>(&stream_id(walkthrough_id, end_user_id))
        .await?
        .0)
}

/// Who is selecting what, where.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub org_id: Uuid,
    pub server_id: Uuid,
    pub end_user_id: Uuid,
    pub walkthrough_id: Uuid,
}

/// Starts, resumes or restarts a walkthrough and makes it the end user's current one.
pub async fn select(
    store: &EventStore,
    target: Target,
    resume_if_exists: bool,
    newest: &StartingVersion,
    at: DateTime<Utc>,
    metadata: &EventMetadata,
) -> Result<Outcome> {
    let metadata = metadata.clone().for_org(target.org_id);
    let stream = stream_id(target.walkthrough_id, target.end_user_id);
    let key = pointer_key(target.org_id, target.end_user_id);
    for _ in 0..MAX_RETRIES {
        let (mut progress, version) = store.load::<WalkthroughProgress>(&stream).await?;
        let events = progress
            .handle(ProgressCommand::Select {
                org_id: target.org_id,
                walkthrough_id: target.walkthrough_id,
                end_user_id: target.end_user_id,
                server_id: target.server_id,
                resume_if_exists,
                newest: newest.clone(),
                at,
            })
            .map_err(ExecuteError::Domain)?;
        let pointed = keys::owner_of(store.pool(), keys::WALKTHROUGH_SELECTED, &key).await?;
        let mut uow = UnitOfWork::new();
        uow.append(
            WalkthroughProgress::TYPE,
            stream.clone(),
            version,
            &events,
            &metadata,
        )?;
        if pointed != Some(target.walkthrough_id) {
            if let Some(old) = pointed {
                uow.release(keys::WALKTHROUGH_SELECTED, key.clone(), old);
            }
            uow.claim(
                keys::WALKTHROUGH_SELECTED,
                key.clone(),
                target.walkthrough_id,
            );
        }
        if uow.events.is_empty() && uow.claims.is_empty() {
            return Ok(Outcome { progress, events });
        }
        match store.commit(uow).await {
            Ok(_) => {
                for event in &events {
                    progress.apply(event);
                }
                return Ok(Outcome { progress, events });
            }
            // Another select of the same end user moved the pointer meanwhile: decide again.
            Err(CommitError::Conflict | CommitError::KeyTaken { .. }) => conflict_backoff().await,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ExecuteError::Conflict)
}

/// Completes the step the caller is on and moves to the next one.
///
/// Without `expected_step_id`, the step current at the first read is the one completed: if
/// another client of the same end user advanced meanwhile, the retry sees a stale step and
/// answers with the real current one instead of completing a step nobody was shown.
pub async fn complete_step(
    store: &EventStore,
    target: Target,
    expected_step_id: Option<Uuid>,
    at: DateTime<Utc>,
    metadata: &EventMetadata,
) -> Result<Outcome> {
    let metadata = metadata.clone().for_org(target.org_id);
    let stream = stream_id(target.walkthrough_id, target.end_user_id);
    let mut pinned = expected_step_id;
    for _ in 0..MAX_RETRIES {
        let (mut progress, version) = store.load::<WalkthroughProgress>(&stream).await?;
        if pinned.is_none() {
            pinned = progress.run.as_ref().and_then(|r| r.current_step());
        }
        let events = progress
            .handle(ProgressCommand::CompleteStep {
                expected_step_id: pinned,
                server_id: target.server_id,
                at,
            })
            .map_err(ExecuteError::Domain)?;
        let mut uow = UnitOfWork::new();
        uow.append(
            WalkthroughProgress::TYPE,
            stream.clone(),
            version,
            &events,
            &metadata,
        )?;
        match store.commit(uow).await {
            Ok(_) => {
                for event in &events {
                    progress.apply(event);
                }
                return Ok(Outcome { progress, events });
            }
            Err(CommitError::Conflict) => conflict_backoff().await,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ExecuteError::Conflict)
}
