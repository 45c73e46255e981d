//! End users of an org's servers: known by tracking id, by the provider subject they signed in
//! as, and by verified email; and identity stitching, which merges two end users of one org
//! into one person (and undoes a merge).
//!
//! The entry points others call (all take the org, and never match across orgs):
//!
//! - [`sign_in`]`(store, metadata, SignIn { org_id, server_id, provider_id, subject, email,
//!   email_verified, name }) -> Result<Uuid, Failure>`: the end user who signed in, found by
//!   provider subject, then by verified email, else created; records `EndUserSignedIn`.
//!   Concurrent first sign-ins of one subject agree on one end user (key claims, retried).
//! - [`merge`]`(store, metadata, org, into, from, reason) -> Result<Uuid, Failure>`: makes
//!   `from` (and everyone merged into it) part of `into`'s person; returns the survivor (the
//!   person `into` belongs to). Writes nothing when both are already one person: two small reads.
//! - [`unmerge`]`(store, metadata, org, end_user, merged) -> Result<Unmerged, Failure>`: undoes
//!   the merge of `merged` into the person `end_user` belongs to; returns that person (and the
//!   commit's cursor).
//! - [`stitch_ticket_email`]`(store, metadata, org, end_user, &email)`: after a ticket with an
//!   email, merges its (anonymous) end user into the signed-in end user whose verified email it is.
//!
//! How a merge is written (one unit of work, all or nothing): `EndUsersMerged` on the survivor
//! with the identities that move, `EndUserMergedAway` on the merged end user, the write-side
//! keys of those identities (tracking ids, provider subjects, verified emails) released by the
//! merged end user and claimed by the survivor, and for every walkthrough where the merged end
//! user's run went further, a `ProgressCarriedOver` on the survivor's progress stream (and the
//! survivor's walkthrough selection, when it had none). Every key is owned by a person of their
//! own (never by a merged-away end user), so a look-up by key always finds the person.

use crate::errors::Failure;
use crate::services::walkthrough_progress::pointer_key;
use domain::end_user::{
    EndUser, EndUserCommand, EndUserError, EndUserEvent, KeyedIdentities, MergeReason,
    ProviderSubject, SignInFacts, TrackingId,
};
use domain::values::{Email, OrgId};
use domain::walkthrough_progress::{self as progress, ProgressCommand, WalkthroughProgress};
use domain::{Actor, Aggregate, EventMetadata};
use eventstore::index::{self, KeyKind};
use eventstore::{
    CommitError, ConflictPauses, EventStore, ExecuteError, Executed, UnitOfWork, MAX_RETRIES,
};
use uuid::Uuid;

/// The unique-key value of a tracking id: tracking ids are unique per org.
pub fn tracking_key(org_id: Uuid, tracking_id: &TrackingId) -> String {
    format!("{org_id}/{}", tracking_id.as_str())
}

/// The unique-key value of a provider subject: per org.
pub fn subject_key(org_id: Uuid, subject: &ProviderSubject) -> String {
    format!("{org_id}/{}/{}", subject.provider_id, subject.subject)
}

/// The unique-key value of a verified email: per org.
pub fn email_key(org_id: Uuid, email: &Email) -> String {
    format!("{org_id}/{}", email.as_str())
}

/// The end user a tracking id names in an org, if the org's servers have seen it (never
/// creates one). Read from the key index the edge claims it in, so it is never behind.
pub async fn find(
    pool: &sqlx::PgPool,
    org: OrgId,
    tracking_id: &TrackingId,
) -> Result<Option<Uuid>, eventstore::StoreError> {
    index::owner_of(
        pool,
        KeyKind::EndUserTracking,
        &tracking_key(org.0, tracking_id),
    )
    .await
}

/// The end user a tracking id names in an org, created on first sight. Two first calls racing
/// with one new tracking id agree on one end user: the key claim lets one win, and the loser
/// reads the winner's id.
pub async fn identify(
    store: &EventStore,
    org_id: Uuid,
    server_id: Uuid,
    tracking_id: &TrackingId,
    metadata: &EventMetadata,
) -> Result<Uuid, ExecuteError<EndUserError>> {
    let key = tracking_key(org_id, tracking_id);
    for _ in 0..3 {
        if let Some(owner) = index::owner_of(store.pool(), KeyKind::EndUserTracking, &key).await? {
            return Ok(owner);
        }
        let end_user_id = Uuid::new_v4();
        let mut metadata = metadata.clone().for_org(org_id);
        metadata.actor = domain::Actor::EndUser { id: end_user_id };
        let outcome = store
            .execute::<EndUser, _, _>(
                &end_user_id.to_string(),
                &metadata,
                |user| {
                    user.handle(EndUserCommand::Identify {
                        org_id,
                        server_id,
                        tracking_id: tracking_id.clone(),
                    })
                },
                |_, _, uow| {
                    uow.claim(KeyKind::EndUserTracking, key.clone(), end_user_id);
                },
            )
            .await;
        match outcome {
            Ok(_) => return Ok(end_user_id),
            Err(ExecuteError::KeyTaken { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ExecuteError::Conflict)
}

/// Records an email the end user gave; already-known emails change nothing.
pub async fn record_email(
    store: &EventStore,
    org_id: Uuid,
    end_user_id: Uuid,
    email: Email,
    metadata: &EventMetadata,
) -> Result<Executed<EndUserEvent>, ExecuteError<EndUserError>> {
    let metadata = metadata.clone().for_org(org_id);
    store
        .execute::<EndUser, _, _>(
            &end_user_id.to_string(),
            &metadata,
            |user| {
                // A command never writes into another org's stream.
                if user.org_id.is_some_and(|o| o != org_id) {
                    return Err(EndUserError::OtherOrg);
                }
                user.handle(EndUserCommand::RecordEmail {
                    email: email.clone(),
                })
            },
            |_, _, _| {},
        )
        .await
}

/// A sign-in through one of the org's identity providers, as the provider told it (no token).
#[derive(Debug, Clone)]
pub struct SignIn {
    pub org_id: OrgId,
    pub server_id: Uuid,
    pub provider_id: Uuid,
    pub subject: String,
    pub email: Option<Email>,
    pub email_verified: bool,
    pub name: Option<String>,
}

/// How many times a look-up and its commit are tried when another writer moved a key between
/// the two.
const KEY_ATTEMPTS: usize = 5;

/// The end user who signed in: the one the org knows by this provider subject, else the one
/// whose verified email this is (only when the provider says it is verified), else a new one.
/// Records `EndUserSignedIn` (the subject, and a verified email nobody else in the org holds,
/// become keys the end user is found by). Two first sign-ins of one subject racing agree on one
/// end user: the subject's key claim lets one win, and the other finds the winner.
pub async fn sign_in(
    store: &EventStore,
    metadata: &EventMetadata,
    sign_in: SignIn,
) -> Result<Uuid, Failure> {
    let org_id = sign_in.org_id.0;
    let subject = ProviderSubject {
        provider_id: sign_in.provider_id,
        subject: sign_in.subject.clone(),
    };
    let skey = subject_key(org_id, &subject);
    let verified = sign_in.email.as_ref().filter(|_| sign_in.email_verified);
    let ekey = verified.map(|e| email_key(org_id, e));
    for _ in 0..KEY_ATTEMPTS {
        let by_subject = index::owner_of(store.pool(), KeyKind::EndUserSubject, &skey).await?;
        let by_email = match &ekey {
            Some(k) => index::owner_of(store.pool(), KeyKind::EndUserEmail, k).await?,
            None => None,
        };
        let end_user_id = by_subject.or(by_email).unwrap_or_else(Uuid::new_v4);
        let email_keyed = ekey.is_some() && by_email.is_none_or(|o| o == end_user_id);
        let mut metadata = metadata.clone().for_org(org_id);
        metadata.actor = Actor::EndUser { id: end_user_id };
        let facts = SignInFacts {
            org_id,
            server_id: sign_in.server_id,
            provider_id: sign_in.provider_id,
            subject: sign_in.subject.clone(),
            email: sign_in.email.clone(),
            email_verified: sign_in.email_verified,
            name: sign_in.name.clone(),
            email_keyed,
        };
        let outcome = store
            .execute::<EndUser, _, _>(
                &end_user_id.to_string(),
                &metadata,
                |user| user.handle(EndUserCommand::SignIn(facts.clone())),
                |_, _, uow| {
                    uow.claim(KeyKind::EndUserSubject, skey.clone(), end_user_id);
                    if let (true, Some(k)) = (email_keyed, &ekey) {
                        uow.claim(KeyKind::EndUserEmail, k.clone(), end_user_id);
                    }
                },
            )
            .await;
        match outcome {
            Ok(_) => return Ok(end_user_id),
            // Another sign-in claimed the key, or a merge moved it, meanwhile: look again.
            Err(ExecuteError::KeyTaken { .. })
            | Err(ExecuteError::Domain(EndUserError::MergedAway { .. })) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ExecuteError::<EndUserError>::Conflict.into())
}

/// An end user as loaded, with the version of their stream.
struct Loaded {
    id: Uuid,
    user: EndUser,
    version: i64,
}

/// Longest chain of merges followed (a chain is as long as merges were made one after
/// another, each into a person that was later merged again).
const MAX_CHAIN: usize = 32;

/// The person an end user of `org` belongs to now: the end user themselves, or the survivor
/// their merge (and any later merge of that survivor) leads to.
async fn person(store: &EventStore, org: OrgId, end_user_id: Uuid) -> Result<Loaded, Failure> {
    let mut id = end_user_id;
    for _ in 0..MAX_CHAIN {
        let (user, version) = store.load::<EndUser>(&id.to_string()).await?;
        if user.org_id != Some(org.0) {
            return Err(EndUserError::NotFound.into());
        }
        match user.merged_into {
            Some(next) => id = next,
            None => return Ok(Loaded { id, user, version }),
        }
    }
    Err(Failure::internal(format!(
        "end user {end_user_id}: a chain of more than {MAX_CHAIN} merges"
    )))
}

/// The person an end user of `org` belongs to now (themselves unless merged).
pub async fn person_of(store: &EventStore, org: OrgId, end_user_id: Uuid) -> Result<Uuid, Failure> {
    Ok(person(store, org, end_user_id).await?.id)
}

/// Makes `from` and `into` one person: the person `from` belongs to is merged into the person
/// `into` belongs to, the survivor, whose id is returned. Writes nothing, and costs two small
/// reads, when they are one person already, so an edge may call it on every request that
/// carries both identities (better still: only when its cached tracking-id look-up does not
/// already name the signed-in end user). See the module docs for what one merge writes.
pub async fn merge(
    store: &EventStore,
    metadata: &EventMetadata,
    org: OrgId,
    into: Uuid,
    from: Uuid,
    reason: MergeReason,
) -> Result<Uuid, Failure> {
    let metadata = metadata.clone().for_org(org.0);
    let mut pauses = ConflictPauses::new();
    for _ in 0..MAX_RETRIES {
        let survivor = person(store, org, into).await?;
        let merged = person(store, org, from).await?;
        if survivor.id == merged.id {
            return Ok(survivor.id);
        }
        let identities = merged.user.held.clone();
        let absorbed = survivor
            .user
            .handle(EndUserCommand::Absorb {
                survivor: survivor.id,
                merged: merged.id,
                reason,
                identities: identities.clone(),
            })
            .map_err(Failure::from)?;
        let away = merged
            .user
            .handle(EndUserCommand::MergeInto {
                survivor: survivor.id,
                reason,
            })
            .map_err(Failure::from)?;
        let mut uow = UnitOfWork::new();
        uow.append::<EndUser>(
            survivor.id.to_string(),
            survivor.version,
            &absorbed,
            &metadata,
        )
        .map_err(Failure::from)?;
        uow.append::<EndUser>(merged.id.to_string(), merged.version, &away, &metadata)
            .map_err(Failure::from)?;
        move_keys(&mut uow, org.0, &identities, merged.id, survivor.id);
        carry_progress(store, &mut uow, org.0, merged.id, survivor.id, &metadata).await?;
        match store.commit(uow).await {
            Ok(_) => return Ok(survivor.id),
            Err(CommitError::Conflict | CommitError::KeyTaken { .. }) => pauses.pause().await,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ExecuteError::<EndUserError>::Conflict.into())
}

/// An unmerge done: the person the end user named belongs to, and where in the log the unmerge
/// was written (for read-your-writes).
#[derive(Debug, Clone, Copy)]
pub struct Unmerged {
    pub person: Uuid,
    pub cursor: Option<eventstore::Cursor>,
}

/// Undoes the merge of `merged` into the person `end_user` belongs to: the identities that merge
/// moved go back to `merged`, who is a person of their own again (with their own sessions, tool
/// calls, tickets and walkthrough progress, as before the merge). Returns the person `end_user`
/// belongs to. Reverses exactly one merge: when the end user `merged` was merged into has since
/// been merged into another, that later merge must be undone first (`merge_later`). Walkthrough
/// progress carried over to the survivor stays with the survivor, who may have gone on since.
pub async fn unmerge(
    store: &EventStore,
    metadata: &EventMetadata,
    org: OrgId,
    end_user: Uuid,
    merged: Uuid,
) -> Result<Unmerged, Failure> {
    let metadata = metadata.clone().for_org(org.0);
    let mut pauses = ConflictPauses::new();
    for _ in 0..MAX_RETRIES {
        let person_id = person(store, org, end_user).await?.id;
        let (gone, gone_version) = store.load::<EndUser>(&merged.to_string()).await?;
        if gone.org_id != Some(org.0) {
            return Err(EndUserError::NotFound.into());
        }
        let Some(parent_id) = gone.merged_into else {
            return Err(EndUserError::NotMerged.into());
        };
        let parent = person(store, org, parent_id).await?;
        if parent.id != person_id {
            return Err(EndUserError::NotMerged.into());
        }
        if parent.id != parent_id {
            // The end user it was merged into was merged again since.
            let (direct, _) = store.load::<EndUser>(&parent_id.to_string()).await?;
            return Err(EndUserError::MergedAway {
                survivor: direct.merged_into.unwrap_or(parent.id),
            }
            .into());
        }
        let released = parent
            .user
            .handle(EndUserCommand::Release {
                survivor: parent.id,
                merged,
            })
            .map_err(Failure::from)?;
        let restored = gone
            .handle(EndUserCommand::Restore {
                survivor: parent.id,
            })
            .map_err(Failure::from)?;
        let identities = match released.first() {
            Some(EndUserEvent::EndUserUnmerged { identities, .. }) => identities.clone(),
            _ => KeyedIdentities::default(),
        };
        let mut uow = UnitOfWork::new();
        uow.append::<EndUser>(parent.id.to_string(), parent.version, &released, &metadata)
            .map_err(Failure::from)?;
        uow.append::<EndUser>(merged.to_string(), gone_version, &restored, &metadata)
            .map_err(Failure::from)?;
        move_keys(&mut uow, org.0, &identities, parent.id, merged);
        match store.commit(uow).await {
            Ok(appended) => {
                return Ok(Unmerged {
                    person: parent.id,
                    cursor: appended.iter().map(|a| a.cursor).max(),
                })
            }
            Err(CommitError::Conflict | CommitError::KeyTaken { .. }) => pauses.pause().await,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ExecuteError::<EndUserError>::Conflict.into())
}

/// After a support ticket with `email` from `end_user`: when a signed-in end user of the org
/// has this email verified, `end_user` is merged into them (reason `ticket_email`) and the
/// survivor is returned. Only an anonymous end user is merged this way: anyone can type an
/// email, so two signed-in people are never joined on a typed one.
pub async fn stitch_ticket_email(
    store: &EventStore,
    metadata: &EventMetadata,
    org: OrgId,
    end_user: Uuid,
    email: &Email,
) -> Result<Option<Uuid>, Failure> {
    let key = email_key(org.0, email);
    let Some(owner) = index::owner_of(store.pool(), KeyKind::EndUserEmail, &key).await? else {
        return Ok(None);
    };
    let caller = person(store, org, end_user).await?;
    if caller.id == owner {
        return Ok(None);
    }
    if caller.user.is_identified() {
        return Ok(None);
    }
    merge(
        store,
        metadata,
        org,
        owner,
        caller.id,
        MergeReason::TicketEmail,
    )
    .await
    .map(Some)
}

/// Moves the index keys of `identities` from one end user to another, in the unit.
fn move_keys(
    uow: &mut UnitOfWork,
    org_id: Uuid,
    identities: &KeyedIdentities,
    from: Uuid,
    to: Uuid,
) {
    let keys = identities
        .tracking_ids
        .iter()
        .map(|t| (KeyKind::EndUserTracking, tracking_key(org_id, t)))
        .chain(
            identities
                .subjects
                .iter()
                .map(|s| (KeyKind::EndUserSubject, subject_key(org_id, s))),
        )
        .chain(
            identities
                .verified_emails
                .iter()
                .map(|e| (KeyKind::EndUserEmail, email_key(org_id, e))),
        );
    for (kind, key) in keys {
        uow.release(kind, key.clone(), from);
        uow.claim(kind, key, to);
    }
}

/// Adds to a merge's unit the walkthrough progress the survivor carries over from the merged
/// end user: for each walkthrough the merged one has a run of, the further of the two runs
/// wins (`ProgressCarriedOver` on the survivor's stream when it is the merged one's), and the
/// survivor's walkthrough selection is the merged one's when it had none.
///
/// Which walkthroughs: those of the merged end user's rows in `rm_walkthrough_progress`, and
/// the one their selection (write-side, never behind) names; a run is in the read model within
/// moments of its start, and a run started that recently is the selected one. Each run itself
/// is read from its stream, and the commit expects each stream at the version it was read at.
async fn carry_progress(
    store: &EventStore,
    uow: &mut UnitOfWork,
    org_id: Uuid,
    merged: Uuid,
    survivor: Uuid,
    metadata: &EventMetadata,
) -> Result<(), Failure> {
    let merged_pointer = pointer_key(org_id, merged);
    let survivor_pointer = pointer_key(org_id, survivor);
    let selected =
        index::owner_of(store.pool(), KeyKind::WalkthroughSelected, &merged_pointer).await?;
    let mut walkthroughs: Vec<Uuid> = sqlx::query_scalar(
        "SELECT walkthrough_id FROM rm_walkthrough_progress WHERE org_id = $1 AND end_user_id = $2",
    )
    .bind(org_id)
    .bind(merged)
    .fetch_all(store.pool())
    .await?;
    walkthroughs.extend(selected);
    walkthroughs.sort_unstable();
    walkthroughs.dedup();
    for walkthrough_id in walkthroughs {
        let (theirs, _) = store
            .load_since_reset::<WalkthroughProgress>(
                &progress::stream_id(walkthrough_id, merged),
                WalkthroughProgress::reset_events(),
            )
            .await?;
        let Some(run) = theirs.run else { continue };
        let stream = progress::stream_id(walkthrough_id, survivor);
        let (ours, version) = store
            .load_since_reset::<WalkthroughProgress>(&stream, WalkthroughProgress::reset_events())
            .await?;
        let events = ours
            .handle(ProgressCommand::CarryOver {
                org_id,
                walkthrough_id,
                end_user_id: survivor,
                from_end_user_id: merged,
                from: run,
            })
            .map_err(Failure::from)?;
        uow.append::<WalkthroughProgress>(stream, version, &events, metadata)
            .map_err(Failure::from)?;
    }
    if let Some(walkthrough_id) = selected {
        let theirs_now = index::owner_of(
            store.pool(),
            KeyKind::WalkthroughSelected,
            &survivor_pointer,
        )
        .await?;
        if theirs_now.is_none() {
            uow.claim(
                KeyKind::WalkthroughSelected,
                survivor_pointer,
                walkthrough_id,
            );
        }
    }
    Ok(())
}
