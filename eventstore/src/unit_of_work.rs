//! A unit of work: everything one command writes, committed atomically. Its events, the
//! write-side index entries that go with them (key claims and releases, invitations,
//! credentials), the preconditions it was decided on, and the key owners it assumed or is
//! written for.

use crate::codec::encode_payload;
use crate::error::StoreError;
use crate::event::PendingEvent;
use crate::index::KeyKind;
use domain::{Aggregate, DomainEvent, EventMetadata};
use uuid::Uuid;

/// A write-side unique key: `(kind, key)` owned by one id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyClaim {
    pub kind: KeyKind,
    pub key: String,
    pub owner_id: Uuid,
}

/// One write to the write-side index, committed with the unit's events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexWrite {
    /// Takes a unique key (an email, a slug); refused as [`crate::CommitError::KeyTaken`] if
    /// another owner holds it. Claiming a key one already owns changes nothing.
    Claim(KeyClaim),
    /// Frees a key, if this owner still holds it.
    Release(KeyClaim),
    /// Records that `org_id` invited `email`, which has no account yet.
    InvitationAdded { email: String, org_id: Uuid },
    /// The invitation was accepted or revoked.
    InvitationRemoved { email: String, org_id: Uuid },
    /// A user's password hash: credentials never travel in events.
    Credential {
        user_id: Uuid,
        password_hash: String,
    },
    /// A server's tracking secret, sealed (it must be opened to verify signatures, so it
    /// cannot be a hash): it never travels in events either.
    TrackingSecretAdded {
        server_id: Uuid,
        secret_id: Uuid,
        sealed: Vec<u8>,
    },
    /// A revoked tracking secret is deleted.
    TrackingSecretRemoved { server_id: Uuid, secret_id: Uuid },
    /// An identity provider's client secret, sealed (sent to the provider at each token
    /// exchange, so it cannot be a hash); replaces the one before.
    ProviderSecretSet {
        provider_id: Uuid,
        org_id: Uuid,
        sealed: Vec<u8>,
    },
    /// A deleted provider's client secret is deleted with it.
    ProviderSecretRemoved { provider_id: Uuid },
}

/// What must still hold when the unit commits, checked under a transaction-scoped lock on what
/// it is about. A failed check is a conflict: the command runs again with fresh look-ups.
///
/// Signups and invitations of one email both take the email's lock and re-check what they
/// decided on, so an invitation is never left pending for an account that signed up at the
/// same moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// Inviting: the email must still have no account.
    EmailHasNoAccount(String),
    /// Signing up: the email's pending invitations must be exactly these orgs (sorted).
    EmailInvitedBy(String, Vec<Uuid>),
}

impl Precondition {
    /// The email whose lock the check takes.
    pub fn email(&self) -> &str {
        match self {
            Precondition::EmailHasNoAccount(email) | Precondition::EmailInvitedBy(email, _) => {
                email
            }
        }
    }
}

/// Everything one command writes, committed atomically.
#[derive(Debug, Default, Clone)]
pub struct UnitOfWork {
    pub events: Vec<PendingEvent>,
    /// Written in order, after the preconditions held and before the events.
    pub index: Vec<IndexWrite>,
    pub preconditions: Vec<Precondition>,
    /// Keys the command decided on without reading them (from a cache): the unit commits only
    /// if each is still owned as given here, else it is a conflict. Checked under a share lock
    /// on the key, so its owner cannot change between the check and the commit.
    pub expected_owners: Vec<KeyClaim>,
    /// Keys whose owner the unit is written for (the server an MCP request named by its slug):
    /// the unit commits only if each is still owned as given, checked with `expected_owners`
    /// under the same share lock. If one has moved, the unit has no home: it is refused as
    /// [`crate::CommitError::OwnerMoved`], which deciding again cannot cure (unlike a conflict).
    pub required_owners: Vec<KeyClaim>,
}

impl UnitOfWork {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the events a command produced on an aggregate of type `A` loaded at `version`.
    pub fn append<A: Aggregate>(
        &mut self,
        aggregate_id: impl Into<String>,
        version: i64,
        events: &[A::Event],
        metadata: &EventMetadata,
    ) -> Result<&mut Self, StoreError> {
        let aggregate_id = aggregate_id.into();
        let metadata_json =
            serde_json::value::to_raw_value(metadata).map_err(StoreError::Encode)?;
        for (i, event) in events.iter().enumerate() {
            self.events.push(PendingEvent {
                event_id: Uuid::new_v4(),
                aggregate_type: A::TYPE,
                aggregate_id: aggregate_id.clone(),
                sequence: version + 1 + i as i64,
                event_type: event.event_type(),
                event_version: event.event_version(),
                payload: encode_payload(event)?,
                metadata: metadata_json.clone(),
                org_id: metadata.org_id,
            });
        }
        Ok(self)
    }

    pub fn claim(&mut self, kind: KeyKind, key: impl Into<String>, owner_id: Uuid) -> &mut Self {
        self.index.push(IndexWrite::Claim(KeyClaim {
            kind,
            key: key.into(),
            owner_id,
        }));
        self
    }

    pub fn release(&mut self, kind: KeyKind, key: impl Into<String>, owner_id: Uuid) -> &mut Self {
        self.index.push(IndexWrite::Release(KeyClaim {
            kind,
            key: key.into(),
            owner_id,
        }));
        self
    }

    pub fn add_invitation(&mut self, email: impl Into<String>, org_id: Uuid) -> &mut Self {
        self.index.push(IndexWrite::InvitationAdded {
            email: email.into(),
            org_id,
        });
        self
    }

    pub fn remove_invitation(&mut self, email: impl Into<String>, org_id: Uuid) -> &mut Self {
        self.index.push(IndexWrite::InvitationRemoved {
            email: email.into(),
            org_id,
        });
        self
    }

    pub fn set_credential(&mut self, user_id: Uuid, password_hash: impl Into<String>) -> &mut Self {
        self.index.push(IndexWrite::Credential {
            user_id,
            password_hash: password_hash.into(),
        });
        self
    }

    pub fn add_tracking_secret(
        &mut self,
        server_id: Uuid,
        secret_id: Uuid,
        sealed: Vec<u8>,
    ) -> &mut Self {
        self.index.push(IndexWrite::TrackingSecretAdded {
            server_id,
            secret_id,
            sealed,
        });
        self
    }

    pub fn remove_tracking_secret(&mut self, server_id: Uuid, secret_id: Uuid) -> &mut Self {
        self.index.push(IndexWrite::TrackingSecretRemoved {
            server_id,
            secret_id,
        });
        self
    }

    pub fn set_provider_secret(
        &mut self,
        provider_id: Uuid,
        org_id: Uuid,
        sealed: Vec<u8>,
    ) -> &mut Self {
        self.index.push(IndexWrite::ProviderSecretSet {
            provider_id,
            org_id,
            sealed,
        });
        self
    }

    pub fn remove_provider_secret(&mut self, provider_id: Uuid) -> &mut Self {
        self.index
            .push(IndexWrite::ProviderSecretRemoved { provider_id });
        self
    }

    /// Commits only if `condition` still holds then.
    pub fn require(&mut self, condition: Precondition) -> &mut Self {
        self.preconditions.push(condition);
        self
    }

    /// Commits only if `(kind, key)` is still owned by `owner_id` (see `expected_owners`).
    pub fn expect_owner(
        &mut self,
        kind: KeyKind,
        key: impl Into<String>,
        owner_id: Uuid,
    ) -> &mut Self {
        self.expected_owners.push(KeyClaim {
            kind,
            key: key.into(),
            owner_id,
        });
        self
    }

    /// Commits only if `(kind, key)` is still owned by `owner_id`, else is refused as
    /// [`crate::CommitError::OwnerMoved`] (see `required_owners`).
    pub fn require_owner(
        &mut self,
        kind: KeyKind,
        key: impl Into<String>,
        owner_id: Uuid,
    ) -> &mut Self {
        self.required_owners.push(KeyClaim {
            kind,
            key: key.into(),
            owner_id,
        });
        self
    }

    /// Whether the unit writes to the index (and so needs the explicit-transaction path).
    pub(crate) fn has_index_writes(&self) -> bool {
        !(self.index.is_empty() && self.preconditions.is_empty())
    }

    /// Whether committing the unit writes or checks anything at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.events.is_empty()
            && !self.has_index_writes()
            && self.expected_owners.is_empty()
            && self.required_owners.is_empty()
    }
}
