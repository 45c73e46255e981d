//! A store on a fresh database, and the few facts most tests start from.

use chrono::{Duration, Utc};
use commands::services::accounts::{self, NewRefreshFamily};
use commands::services::{organizations, servers};
use domain::metadata::Actor;
use domain::server::ServerConfig;
use domain::values::{AuthMode, Email, Name, Role, Slug};
use domain::EventMetadata;
use eventstore::EventStore;
use testkit::TestDb;
use uuid::Uuid;

pub struct Given {
    pub store: EventStore,
    /// Kept for its drop, after the store's: the database goes with the test.
    _db: TestDb,
}

impl Given {
    pub async fn new() -> Self {
        let db = TestDb::new().await;
        let store = EventStore::open(db.pool().clone()).await.unwrap();
        Self { store, _db: db }
    }

    /// A signed-up platform user.
    pub async fn user(&self, address: &str) -> Uuid {
        let id = Uuid::new_v4();
        accounts::sign_up(
            &self.store,
            id,
            email(address),
            Name::parse(address.split('@').next().unwrap()).unwrap(),
            format!("hash-of-{address}"),
            refresh_family(),
            None,
            &as_user(id),
        )
        .await
        .unwrap();
        id
    }

    /// An org owned by `owner`.
    pub async fn org(&self, owner: Uuid, owner_email: &str, slug: &str) -> Uuid {
        let org = Uuid::new_v4();
        organizations::create(
            &self.store,
            org,
            owner,
            email(owner_email),
            Name::parse(slug).unwrap(),
            Slug::parse(slug).unwrap(),
            &as_user(owner),
        )
        .await
        .unwrap();
        org
    }

    /// Invites an email; returns the invitation token's hash (a week to accept it).
    pub async fn invite(&self, org: Uuid, actor: Uuid, address: &str, as_role: &str) -> String {
        let token_hash = format!("hash-{}", Uuid::new_v4());
        organizations::invite(
            &self.store,
            org,
            actor,
            email(address),
            role(as_role),
            organizations::NewInvitation {
                token_hash: token_hash.clone(),
                expires_at: Utc::now() + Duration::days(7),
            },
            &as_user(actor),
        )
        .await
        .unwrap();
        token_hash
    }

    /// Adds a signed-up user to an org: invited, and accepting with the token.
    pub async fn member(&self, org: Uuid, actor: Uuid, address: &str, as_role: &str) {
        let token_hash = self.invite(org, actor, address, as_role).await;
        let (user_id, _) = accounts::find_user_by_email(&self.store, &email(address))
            .await
            .unwrap()
            .unwrap();
        organizations::accept_invitation(
            &self.store,
            &token_hash,
            user_id,
            email(address),
            Utc::now(),
            &as_user(user_id),
        )
        .await
        .unwrap();
    }

    /// A server of the org.
    pub async fn server(&self, org: Uuid, actor: Uuid, slug: &str) -> Uuid {
        let id = Uuid::new_v4();
        servers::create(&self.store, org, id, actor, config(slug), &as_user(actor))
            .await
            .unwrap();
        id
    }
}

pub fn as_user(id: Uuid) -> EventMetadata {
    EventMetadata::by(Actor::PlatformUser { id })
}

pub fn refresh_family() -> NewRefreshFamily {
    NewRefreshFamily {
        family_id: Uuid::new_v4(),
        token_hash: format!("token-{}", Uuid::new_v4()),
        expires_at: Utc::now() + Duration::days(30),
    }
}

pub fn email(s: &str) -> Email {
    Email::parse(s).unwrap()
}

pub fn role(s: &str) -> Role {
    Role::parse(s).unwrap()
}

pub fn config(slug: &str) -> ServerConfig {
    ServerConfig {
        name: Name::parse(slug).unwrap(),
        slug: Slug::parse(slug).unwrap(),
        auth_mode: AuthMode::None,
        support_tool: true,
        walkthrough_tools: true,
        conformance_fixtures: false,
        require_signed_tracking: false,
        identity_provider_id: None,
    }
}
