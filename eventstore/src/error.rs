//! What can go wrong in the event store, for readers, committers and command execution.

use crate::index::KeyKind;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("stored event {aggregate_type}/{aggregate_id}#{sequence} cannot be decoded: {source}")]
    Decode {
        aggregate_type: String,
        aggregate_id: String,
        sequence: i64,
        source: serde_json::Error,
    },
    #[error("event cannot be encoded: {0}")]
    Encode(serde_json::Error),
    #[error("the event store is shutting down")]
    Closed,
}

impl StoreError {
    /// True when the database could not be reached (the edge answers 503).
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Database(e) => is_unavailable(e),
            StoreError::Closed => true,
            _ => false,
        }
    }
}

/// Whether a database error means "cannot reach Postgres" rather than a bug.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed
    ) || matches!(e, sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("57P") || c.starts_with("08")))
}

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// Another writer appended to one of the streams first.
    #[error("concurrent modification")]
    Conflict,
    /// A unique key (an email, a slug) already belongs to someone else.
    #[error("{kind} is already taken")]
    KeyTaken { kind: KeyKind },
    /// A key the unit required (`UnitOfWork::require_owner`) is no longer owned as given: what
    /// the unit was written for has gone (a server archived, its slug taken by another). Not
    /// a conflict: deciding again on the same owner cannot help. (The key is not shown: it may
    /// be personal.)
    #[error("the {kind} this was written for has another owner now")]
    OwnerMoved { kind: KeyKind, key: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, thiserror::Error)]
pub enum ExecuteError<E> {
    #[error(transparent)]
    Domain(E),
    #[error("concurrent modification, retries exhausted")]
    Conflict,
    #[error("{kind} is already taken")]
    KeyTaken { kind: KeyKind },
    /// See [`CommitError::OwnerMoved`]; never retried.
    #[error("the {kind} this was written for has another owner now")]
    OwnerMoved { kind: KeyKind, key: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl<E> From<CommitError> for ExecuteError<E> {
    fn from(e: CommitError) -> Self {
        match e {
            CommitError::Conflict => ExecuteError::Conflict,
            CommitError::KeyTaken { kind } => ExecuteError::KeyTaken { kind },
            CommitError::OwnerMoved { kind, key } => ExecuteError::OwnerMoved { kind, key },
            CommitError::Store(s) => ExecuteError::Store(s),
        }
    }
}
