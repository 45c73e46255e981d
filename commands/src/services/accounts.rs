//! Platform accounts: signup (joining the org whose invitation token it presents), login facts,
//! and rotating refresh-token families.

use chrono::{DateTime, Utc};
use domain::login::{LoginAttempt, LoginCommand};
use domain::organization::{Organization, OrganizationCommand, OrganizationError};
use domain::refresh_token::{
    RefreshTokenCommand, RefreshTokenError, RefreshTokenEvent, RefreshTokenFamily, RevokeReason,
};
use domain::user::{User, UserCommand, UserError};
use domain::values::{Email, Name};
use domain::{Aggregate, EventMetadata};
use eventstore::index::{self, KeyKind};
use eventstore::{CommitError, EventStore, ExecuteError, Executed, StoreError, UnitOfWork};
use uuid::Uuid;

/// A new refresh-token family to start with a successful signup or login.
#[derive(Debug, Clone)]
pub struct NewRefreshFamily {
    pub family_id: Uuid,
    pub token_hash: String,
    pub expires_at: DateTime<Utc>,
}

/// An invitation a signup presents: its token's hash, and the time to judge its expiry by.
#[derive(Debug, Clone)]
pub struct PresentedInvitation {
    pub token_hash: String,
    pub now: DateTime<Utc>,
}

/// Why a signup was refused: the account's own rule, or the invitation it presented.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignUpError {
    #[error(transparent)]
    User(#[from] UserError),
    #[error(transparent)]
    Invitation(#[from] OrganizationError),
}

/// What a signup wrote: the org joined by invitation (if any), and where its events landed.
#[derive(Debug, Clone)]
pub struct SignedUp {
    pub joined_orgs: Vec<Uuid>,
    pub last_cursor: Option<eventstore::Cursor>,
    /// When the account was created: its events' recorded time (`None` only if nothing was
    /// written, which a signup never does).
    pub recorded_at: Option<DateTime<Utc>>,
}

/// Signs a user up, accepts the invitation it presents (if any), and starts a refresh family,
/// atomically. An invitation is accepted only with its token: signing up with an invited email
/// alone joins nothing. A presented invitation that cannot be accepted (unknown, used, revoked,
/// replaced, expired, or for another email) refuses the whole signup.
#[allow(clippy::too_many_arguments)]
pub async fn sign_up(
    store: &EventStore,
    user_id: Uuid,
    email: Email,
    name: Name,
    password_hash: String,
    refresh: NewRefreshFamily,
    invitation: Option<PresentedInvitation>,
    metadata: &EventMetadata,
) -> Result<SignedUp, ExecuteError<SignUpError>> {
    let refused = |e: OrganizationError| ExecuteError::Domain(SignUpError::Invitation(e));
    let mut pauses = eventstore::ConflictPauses::new();
    for _ in 0..eventstore::MAX_RETRIES {
        let mut uow = UnitOfWork::new();
        let events = User::default()
            .handle(UserCommand::SignUp {
                email: email.clone(),
                name: name.clone(),
            })
            .map_err(|e| ExecuteError::Domain(e.into()))?;
        uow.append::<User>(user_id.to_string(), 0, &events, metadata)?;
        uow.claim(KeyKind::UserEmail, email.as_str(), user_id);
        uow.set_credential(user_id, password_hash.clone());
        append_refresh_issue(&mut uow, user_id, &refresh, metadata)?;

        let mut joined = Vec::new();
        if let Some(presented) = &invitation {
            let hash = presented.token_hash.as_str();
            let org_id = index::owner_of(store.pool(), KeyKind::InvitationToken, hash)
                .await?
                .ok_or_else(|| refused(OrganizationError::UnknownInvitation))?;
            let (org, version) = store.load::<Organization>(&org_id.to_string()).await?;
            let events = org
                .handle(OrganizationCommand::AcceptInvitation {
                    user_id,
                    email: email.clone(),
                    token_hash: hash.to_owned(),
                    now: presented.now,
                })
                .map_err(|e| match e {
                    OrganizationError::NotFound => refused(OrganizationError::UnknownInvitation),
                    e => refused(e),
                })?;
            let org_meta = metadata.clone().for_org(org_id);
            uow.append::<Organization>(org_id.to_string(), version, &events, &org_meta)?;
            uow.release(KeyKind::InvitationToken, hash, org_id)
                .remove_invitation(email.as_str(), org_id);
            joined.push(org_id);
        }
        match store.commit(uow).await {
            Ok(appended) => {
                return Ok(SignedUp {
                    joined_orgs: joined,
                    last_cursor: appended.iter().map(|a| a.cursor).max(),
                    recorded_at: appended.iter().map(|a| a.recorded_at).max(),
                })
            }
            Err(CommitError::Conflict) => pauses.pause().await,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ExecuteError::Conflict)
}

fn append_refresh_issue(
    uow: &mut UnitOfWork,
    user_id: Uuid,
    refresh: &NewRefreshFamily,
    metadata: &EventMetadata,
) -> Result<(), CommitError> {
    // A brand-new stream: the aggregate decides on its empty state.
    let events = RefreshTokenFamily::default()
        .handle(RefreshTokenCommand::Issue {
            user_id,
            token_hash: refresh.token_hash.clone(),
            expires_at: refresh.expires_at,
        })
        .map_err(|_| CommitError::Conflict)?;
    uow.append::<RefreshTokenFamily>(refresh.family_id.to_string(), 0, &events, metadata)?;
    Ok(())
}

/// The user an email belongs to, loaded.
pub async fn find_user_by_email(
    store: &EventStore,
    email: &Email,
) -> Result<Option<(Uuid, User)>, StoreError> {
    let Some(user_id) = index::owner_of(store.pool(), KeyKind::UserEmail, email.as_str()).await?
    else {
        return Ok(None);
    };
    let (user, _) = store.load::<User>(&user_id.to_string()).await?;
    Ok(user.signed_up.then_some((user_id, user)))
}

/// The stored argon2 hash of a user's password.
pub async fn password_hash(
    store: &EventStore,
    user_id: Uuid,
) -> Result<Option<String>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT password_hash FROM user_credentials WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(store.pool())
            .await?,
    )
}

/// Loads a user by id.
pub async fn load_user(store: &EventStore, user_id: Uuid) -> Result<Option<User>, StoreError> {
    let (user, _) = store.load::<User>(&user_id.to_string()).await?;
    Ok(user.signed_up.then_some(user))
}

/// Records a successful login and starts its refresh family in one commit.
pub async fn record_login_success(
    store: &EventStore,
    user_id: Uuid,
    email: Email,
    refresh: NewRefreshFamily,
    metadata: &EventMetadata,
) -> Result<(), CommitError> {
    let mut uow = UnitOfWork::new();
    let events = LoginAttempt::default()
        .handle(LoginCommand::RecordSuccess { user_id, email })
        .map_err(|_| CommitError::Conflict)?;
    uow.append::<LoginAttempt>(Uuid::new_v4().to_string(), 0, &events, metadata)?;
    append_refresh_issue(&mut uow, user_id, &refresh, metadata)?;
    store.commit(uow).await?;
    Ok(())
}

/// Records a failed login (its own one-event stream).
pub async fn record_login_failure(
    store: &EventStore,
    command: LoginCommand,
    metadata: &EventMetadata,
) -> Result<(), CommitError> {
    let events = LoginAttempt::default()
        .handle(command)
        .map_err(|_| CommitError::Conflict)?;
    let mut uow = UnitOfWork::new();
    uow.append::<LoginAttempt>(Uuid::new_v4().to_string(), 0, &events, metadata)?;
    store.commit(uow).await?;
    Ok(())
}

/// What presenting a refresh token led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The token was current: here is the user it belongs to.
    Rotated { user_id: Uuid },
    /// The token had already been rotated away: the family is now revoked.
    ReuseDetected,
}

/// Rotates the family's token if `presented_hash` is current.
pub async fn rotate_refresh_token(
    store: &EventStore,
    family_id: Uuid,
    presented_hash: &str,
    new_hash: &str,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    metadata: &EventMetadata,
) -> Result<Rotation, ExecuteError<RefreshTokenError>> {
    let executed = store
        .run::<RefreshTokenFamily>(&family_id.to_string(), metadata, |_| {
            RefreshTokenCommand::Rotate {
                presented_hash: presented_hash.to_owned(),
                new_hash: new_hash.to_owned(),
                now,
                expires_at,
            }
        })
        .await?;
    rotation_outcome(store, family_id, &executed).await
}

async fn rotation_outcome(
    store: &EventStore,
    family_id: Uuid,
    executed: &Executed<RefreshTokenEvent>,
) -> Result<Rotation, ExecuteError<RefreshTokenError>> {
    match executed.events.first() {
        Some(RefreshTokenEvent::RefreshTokenRotated { .. }) => {
            let (family, _) = store
                .load::<RefreshTokenFamily>(&family_id.to_string())
                .await?;
            family
                .user_id
                .map(|user_id| Rotation::Rotated { user_id })
                .ok_or(ExecuteError::Domain(RefreshTokenError::Unknown))
        }
        _ => Ok(Rotation::ReuseDetected),
    }
}

/// Revokes a family (logout). The presented token must be the family's current one.
pub async fn revoke_refresh_family(
    store: &EventStore,
    family_id: Uuid,
    presented_hash: &str,
    metadata: &EventMetadata,
) -> Result<(), ExecuteError<RefreshTokenError>> {
    store
        .execute::<RefreshTokenFamily, _, _>(
            &family_id.to_string(),
            metadata,
            |family| {
                family.handle(RefreshTokenCommand::Revoke {
                    reason: RevokeReason::Logout,
                    presented_hash: presented_hash.to_owned(),
                })
            },
            |_, _, _| {},
        )
        .await?;
    Ok(())
}
