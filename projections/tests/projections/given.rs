//! `Given`: events appended through the event store, then fed to every projection the way a
//! live projector feeds it (events it wants, in cursor order, one transaction with its
//! checkpoint).

use chrono::{DateTime, Utc};
use domain::metadata::Actor;
use domain::organization::{Organization, OrganizationEvent};
use domain::server::{Server, ServerConfig, ServerEvent};
use domain::user::{User, UserEvent};
use domain::values::{AuthMode, Email, Name, OrgId, Role, Slug};
use domain::{Aggregate, EventMetadata};
use eventstore::{Cursor, EventFilter, EventStore, UnitOfWork};
use projections::checkpoint;
use projections::{registry, Tables};
use sqlx::PgPool;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use testkit::TestDb;
use uuid::Uuid;

pub struct Given {
    // The store first: its committers stop before the database is dropped.
    pub store: EventStore,
    pub db: TestDb,
    versions: HashMap<(&'static str, String), i64>,
    /// The newest event appended, and the newest fed to the projections.
    appended: Cursor,
    projected: Cursor,
}

impl Given {
    pub async fn new() -> Self {
        let db = TestDb::new().await;
        let store = EventStore::open(db.pool().clone()).await.unwrap();
        Self {
            store,
            db,
            versions: HashMap::new(),
            appended: Cursor::START,
            projected: Cursor::START,
        }
    }

    pub fn pool(&self) -> &PgPool {
        self.db.pool()
    }

    /// Appends events to an aggregate's stream in one commit, at the stream's next sequence.
    pub async fn append<A: Aggregate>(
        &mut self,
        id: impl ToString,
        metadata: &EventMetadata,
        events: &[A::Event],
    ) {
        let id = id.to_string();
        let version = self.versions.entry((A::TYPE, id.clone())).or_insert(0);
        let mut uow = UnitOfWork::new();
        uow.append::<A>(id, *version, events, metadata).unwrap();
        let appended = self.store.commit(uow).await.unwrap();
        *version += events.len() as i64;
        self.appended = appended
            .iter()
            .map(|a| a.cursor)
            .fold(self.appended, Cursor::max);
    }

    /// Feeds everything appended since the last call to every projection, as one batch each.
    pub async fn project(&mut self) {
        let events = self.committed_since(self.projected).await;
        let Some(last) = events.last() else { return };
        let head = last.cursor;
        for projection in registry::all() {
            let name = projection.name();
            checkpoint::ensure(self.pool(), name).await.unwrap();
            let wanted = projection.wanted(events.clone());
            let mut tx = self.pool().begin().await.unwrap();
            let current = checkpoint::lock(&mut tx, name).await.unwrap();
            if !wanted.is_empty() {
                projection
                    .apply(&mut tx, Tables::LIVE, &wanted)
                    .await
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
            }
            checkpoint::store(
                &mut tx,
                name,
                checkpoint::Checkpoint {
                    cursor: head,
                    ..current
                },
            )
            .await
            .unwrap();
            tx.commit().await.unwrap();
        }
        self.projected = head;
    }

    /// Every event after `after` up to the newest appended. The log is read as projectors
    /// read it: an event becomes readable once no transaction that started before it commits
    /// is still running, anywhere on the server (other tests' too), so this waits for that.
    async fn committed_since(&self, after: Cursor) -> Vec<eventstore::StoredEvent> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut events = Vec::new();
        let mut from = after;
        while from < self.appended {
            let page =
                eventstore::reading::read_after(self.pool(), &EventFilter::default(), from, 10_000)
                    .await
                    .unwrap();
            if let Some(last) = page.last() {
                from = last.cursor;
                events.extend(page);
                continue;
            }
            assert!(
                Instant::now() < deadline,
                "appended events never became readable"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        events
    }

    /// A platform user who signed up.
    pub async fn user(&mut self, email: &str) -> Uuid {
        let id = Uuid::new_v4();
        self.append::<User>(
            id,
            &EventMetadata::by(Actor::PlatformUser { id }),
            &[UserEvent::UserSignedUp {
                email: Email::parse(email).unwrap(),
                name: Name::parse(email.split('@').next().unwrap()).unwrap(),
            }],
        )
        .await;
        id
    }

    /// An org created by `owner`.
    pub async fn org(&mut self, owner: Uuid, owner_email: &str, slug: &str) -> OrgId {
        let org = Uuid::new_v4();
        self.append::<Organization>(
            org,
            &by(owner, org),
            &[OrganizationEvent::OrganizationCreated {
                name: Name::parse(slug).unwrap(),
                slug: Slug::parse(slug).unwrap(),
                owner_id: owner,
                owner_email: Email::parse(owner_email).unwrap(),
            }],
        )
        .await;
        OrgId(org)
    }

    /// Org events by `actor`.
    pub async fn org_events(&mut self, org: OrgId, actor: Uuid, events: &[OrganizationEvent]) {
        self.append::<Organization>(org.0, &by(actor, org.0), events)
            .await;
    }

    /// A server of the org, created by `actor`.
    pub async fn server(&mut self, org: OrgId, actor: Uuid, slug: &str) -> Uuid {
        let id = Uuid::new_v4();
        self.append::<Server>(
            id,
            &by(actor, org.0),
            &[ServerEvent::ServerCreated {
                org_id: org.0,
                config: config(slug),
            }],
        )
        .await;
        id
    }
}

/// Metadata of a platform user's command in an org.
pub fn by(actor: Uuid, org: Uuid) -> EventMetadata {
    EventMetadata::by(Actor::PlatformUser { id: actor }).for_org(org)
}

/// Metadata of an end user's action in an org.
pub fn end_user(id: Uuid, org: Uuid) -> EventMetadata {
    EventMetadata::by(Actor::EndUser { id }).for_org(org)
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

pub fn email(s: &str) -> Email {
    Email::parse(s).unwrap()
}

pub fn role(s: &str) -> Role {
    Role::parse(s).unwrap()
}

/// Now, to the microsecond (what Postgres keeps), so a value read back compares equal.
pub fn now() -> DateTime<Utc> {
    use chrono::SubsecRound;
    Utc::now().trunc_subsecs(6)
}
