//! The audit log: who did what to what, when, from where, for every event of an org.
//!
//! An entry names what it is about (a server, a walkthrough, a ticket's reference, a member's
//! email) as it was named when it happened, in its sentence and as fields. The names come from
//! the events this projection reads, kept in `rm_audit_names`, a table of its own: a rebuild
//! replays the events in order and so rebuilds both, and a later rename changes only the
//! entries written after it.

use crate::projection::{Projection, ProjectionError, Reads, Tables};
use chrono::{DateTime, Utc};
use domain::identity_provider::{IdentityProvider, ProviderEvent};
use domain::organization::{Organization, OrganizationEvent};
use domain::server::{Server, ServerEvent};
use domain::ticket::{Ticket, TicketEvent};
use domain::user::{User, UserEvent};
use domain::values::OrgId;
use domain::walkthrough::{Walkthrough, WalkthroughEvent};
use domain::Aggregate;
use eventstore::{Cursor, StoredEvent};
use futures::future::BoxFuture;
use serde::Serialize;
use sqlx::{PgConnection, PgPool, Row};
use std::collections::HashMap;
use uuid::Uuid;

pub struct AuditProjection;

/// Aggregates whose events stay out of the audit log: end users' own activity on the MCP edge,
/// which has its own views (end users, sessions, tool calls).
const NOT_AUDITED: &[&str] = eventstore::nats::ACTIVITY_AGGREGATES;

impl Projection for AuditProjection {
    fn name(&self) -> &'static str {
        "audit_log"
    }

    fn reads(&self) -> Reads {
        Reads::AllBut(NOT_AUDITED)
    }

    fn tables(&self) -> &'static [&'static str] {
        &["rm_audit_log", "rm_audit_names"]
    }

    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        t: Tables,
        events: &'a [StoredEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            // End users' own activity (tool calls, protocol sessions) has its own views; the
            // audit log is what people and the platform did to the org.
            let mut decoded = Vec::new();
            for e in events {
                if NOT_AUDITED.contains(&e.aggregate_type.as_str()) {
                    continue;
                }
                let Some(event) = Audited::decode(e)? else {
                    continue;
                };
                decoded.push((e, event));
            }
            if decoded.is_empty() {
                return Ok(());
            }
            let names_table = t.name("rm_audit_names");
            let mut names = Names::load(
                &mut *conn,
                &names_table,
                decoded.iter().flat_map(|(e, event)| event.mentions(e)),
            )
            .await?;

            let n = decoded.len();
            let mut org_ids = Vec::with_capacity(n);
            let mut txs = Vec::with_capacity(n);
            let mut positions = Vec::with_capacity(n);
            let mut event_ids = Vec::with_capacity(n);
            let mut occurred = Vec::with_capacity(n);
            let mut actor_kinds = Vec::with_capacity(n);
            let mut actor_ids: Vec<Option<Uuid>> = Vec::with_capacity(n);
            let mut actions = Vec::with_capacity(n);
            let mut target_types = Vec::with_capacity(n);
            let mut target_ids = Vec::with_capacity(n);
            let mut target_names: Vec<Option<String>> = Vec::with_capacity(n);
            let mut related_types: Vec<Option<&str>> = Vec::with_capacity(n);
            let mut related_ids: Vec<Option<String>> = Vec::with_capacity(n);
            let mut related_names: Vec<Option<String>> = Vec::with_capacity(n);
            let mut summaries = Vec::with_capacity(n);
            let mut request_ids: Vec<Option<String>> = Vec::with_capacity(n);
            let mut client_ips: Vec<Option<String>> = Vec::with_capacity(n);
            for (e, event) in &decoded {
                // In order, so each entry sees the names as they were at its event (and a
                // creation or a rename names its own entry).
                let described = describe(
                    e.aggregate_id.parse().unwrap_or_default(),
                    event,
                    &mut names,
                );
                // Events outside any org (sign-ups) only feed the names.
                let Some(org_id) = e.org_id else { continue };
                let meta = e.typed_metadata();
                org_ids.push(org_id);
                txs.push(e.cursor.transaction_id.to_string());
                positions.push(e.cursor.global_position);
                event_ids.push(e.event_id);
                occurred.push(e.recorded_at);
                actor_kinds.push(meta.actor.kind());
                actor_ids.push(meta.actor.id());
                actions.push(e.event_type.as_str());
                target_types.push(e.aggregate_type.as_str());
                target_ids.push(e.aggregate_id.as_str());
                target_names.push(described.target_name);
                related_types.push(described.related.as_ref().map(|r| r.kind));
                related_ids.push(described.related.as_ref().map(|r| r.id.clone()));
                related_names.push(described.related.and_then(|r| r.name));
                summaries.push(described.summary);
                request_ids.push(meta.request_id);
                client_ips.push(meta.client_ip);
            }
            names.store(&mut *conn, &names_table).await?;
            if org_ids.is_empty() {
                return Ok(());
            }
            let table = t.name("rm_audit_log");
            // An entry already there is rewritten, not kept: after migration 0011 sent this
            // projection back to the start, replaying names the entries written before it.
            // Otherwise a conflict is a redelivery, which writes the same values again.
            sqlx::query(&format!(
                "INSERT INTO {table} (org_id, transaction_id, global_position, event_id, \
                 occurred_at, actor_kind, actor_id, action, target_type, target_id, summary, \
                 request_id, client_ip, target_name, related_type, related_id, related_name) \
                 SELECT o, t::xid8, p, e, at, ak, ai, a, tt, ti, s, r, ip, tn, rt, ri, rn \
                 FROM UNNEST( \
                 $1::uuid[], $2::text[], $3::bigint[], $4::uuid[], $5::timestamptz[], $6::text[], \
                 $7::uuid[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], \
                 $13::text[], $14::text[], $15::text[], $16::text[], $17::text[]) \
                 AS u(o, t, p, e, at, ak, ai, a, tt, ti, s, r, ip, tn, rt, ri, rn) \
                 ON CONFLICT (org_id, transaction_id, global_position) DO UPDATE SET \
                 summary = EXCLUDED.summary, target_name = EXCLUDED.target_name, \
                 related_type = EXCLUDED.related_type, related_id = EXCLUDED.related_id, \
                 related_name = EXCLUDED.related_name"
            ))
            .bind(&org_ids)
            .bind(&txs)
            .bind(&positions)
            .bind(&event_ids)
            .bind(&occurred)
            .bind(&actor_kinds)
            .bind(&actor_ids)
            .bind(&actions)
            .bind(&target_types)
            .bind(&target_ids)
            .bind(&summaries)
            .bind(&request_ids)
            .bind(&client_ips)
            .bind(&target_names)
            .bind(&related_types)
            .bind(&related_ids)
            .bind(&related_names)
            .execute(conn)
            .await?;
            Ok(())
        })
    }
}

/// An event the audit log describes or takes names from, decoded by its aggregate's type, so
/// that renaming a variant fails to compile here.
#[derive(Debug, Clone)]
pub enum Audited {
    Organization(OrganizationEvent),
    Server(ServerEvent),
    Walkthrough(WalkthroughEvent),
    Ticket(TicketEvent),
    User(UserEvent),
    IdentityProvider(ProviderEvent),
    /// An event of an org this log has no sentence for: its entry reads as its type.
    Other(String),
}

impl Audited {
    /// `None` for events that neither belong to an org nor carry a name (login attempts,
    /// refresh tokens).
    fn decode(e: &StoredEvent) -> Result<Option<Self>, ProjectionError> {
        let t = e.aggregate_type.as_str();
        Ok(Some(if t == Organization::TYPE {
            Audited::Organization(e.decode()?)
        } else if t == Server::TYPE {
            Audited::Server(e.decode()?)
        } else if t == Walkthrough::TYPE {
            Audited::Walkthrough(e.decode()?)
        } else if t == Ticket::TYPE {
            Audited::Ticket(e.decode()?)
        } else if t == User::TYPE {
            Audited::User(e.decode()?)
        } else if t == IdentityProvider::TYPE {
            Audited::IdentityProvider(e.decode()?)
        } else if e.org_id.is_some() {
            Audited::Other(e.event_type.clone())
        } else {
            return Ok(None);
        }))
    }

    /// The names this event's entry may read: its own aggregate's and those of what it points
    /// to, loaded once per batch.
    fn mentions(&self, e: &StoredEvent) -> Vec<(&'static str, Uuid)> {
        let id = e.aggregate_id.parse().unwrap_or_default();
        match self {
            Audited::Organization(_) => vec![(Organization::TYPE, id)],
            Audited::Server(_) => vec![(Server::TYPE, id)],
            Audited::IdentityProvider(_) => vec![(IdentityProvider::TYPE, id)],
            Audited::Walkthrough(event) => {
                let mut keys = vec![(Walkthrough::TYPE, id)];
                if let WalkthroughEvent::WalkthroughAssigned { server_id, .. }
                | WalkthroughEvent::WalkthroughAssignmentChanged { server_id, .. }
                | WalkthroughEvent::WalkthroughUnassigned { server_id } = event
                {
                    keys.push((Server::TYPE, *server_id));
                }
                keys
            }
            Audited::Ticket(TicketEvent::TicketOpened { server_id, .. }) => {
                vec![(Server::TYPE, *server_id)]
            }
            Audited::Ticket(TicketEvent::TicketAssigned { member_id, .. }) => {
                vec![(User::TYPE, *member_id)]
            }
            Audited::Ticket(_) | Audited::User(_) | Audited::Other(_) => Vec::new(),
        }
    }
}

/// The current name of each thing an entry may mention, keyed by its aggregate type and id: a
/// server's name, a walkthrough's title, a user's email.
#[derive(Debug, Default)]
pub struct Names {
    current: HashMap<(&'static str, Uuid), String>,
    changed: HashMap<(&'static str, Uuid), String>,
}

impl Names {
    async fn load(
        conn: &mut PgConnection,
        table: &str,
        keys: impl Iterator<Item = (&'static str, Uuid)>,
    ) -> Result<Self, sqlx::Error> {
        let mut kinds: Vec<&'static str> = Vec::new();
        let mut ids = Vec::new();
        for (kind, id) in keys {
            kinds.push(kind);
            ids.push(id);
        }
        let mut names = Names::default();
        if ids.is_empty() {
            return Ok(names);
        }
        let rows = sqlx::query(&format!(
            "SELECT n.kind, n.id, n.name FROM {table} n \
             JOIN UNNEST($1::text[], $2::uuid[]) AS k(kind, id) USING (kind, id)"
        ))
        .bind(&kinds)
        .bind(&ids)
        .fetch_all(conn)
        .await?;
        for row in rows {
            let kind: String = row.try_get("kind")?;
            // Only kinds asked for come back, so the lookup always finds a static name.
            if let Some(kind) = kinds.iter().find(|k| **k == kind) {
                names
                    .current
                    .insert((kind, row.try_get("id")?), row.try_get("name")?);
            }
        }
        Ok(names)
    }

    async fn store(self, conn: &mut PgConnection, table: &str) -> Result<(), sqlx::Error> {
        if self.changed.is_empty() {
            return Ok(());
        }
        let mut kinds = Vec::with_capacity(self.changed.len());
        let mut ids = Vec::with_capacity(self.changed.len());
        let mut values = Vec::with_capacity(self.changed.len());
        for ((kind, id), name) in self.changed {
            kinds.push(kind);
            ids.push(id);
            values.push(name);
        }
        sqlx::query(&format!(
            "INSERT INTO {table} (kind, id, name) \
             SELECT * FROM UNNEST($1::text[], $2::uuid[], $3::text[]) \
             ON CONFLICT (kind, id) DO UPDATE SET name = EXCLUDED.name"
        ))
        .bind(&kinds)
        .bind(&ids)
        .bind(&values)
        .execute(conn)
        .await?;
        Ok(())
    }

    pub fn get(&self, kind: &'static str, id: Uuid) -> Option<&str> {
        self.current.get(&(kind, id)).map(String::as_str)
    }

    pub fn set(&mut self, kind: &'static str, id: Uuid, name: &str) {
        self.current.insert((kind, id), name.to_owned());
        self.changed.insert((kind, id), name.to_owned());
    }
}

/// Something an entry names besides its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Related {
    pub kind: &'static str,
    /// An aggregate's id; an invitation's email.
    pub id: String,
    pub name: Option<String>,
}

/// The `type` of an invitation an entry names: an email invited to the org, which has no id
/// of its own until someone signs up with it.
pub const INVITATION: &str = "invitation";

/// What an entry says about its event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    /// A one-line sentence, without its actor ("archived server Docs (docs)").
    pub summary: String,
    /// The target's name as it was when it happened.
    pub target_name: Option<String>,
    pub related: Option<Related>,
}

/// Describes the event of aggregate `id`, reading and updating the names as of that event.
pub fn describe(id: Uuid, event: &Audited, names: &mut Names) -> Described {
    match event {
        Audited::Organization(event) => organization(id, event, names),
        Audited::Server(event) => server(id, event, names),
        Audited::IdentityProvider(event) => identity_provider(id, event, names),
        Audited::Walkthrough(event) => walkthrough(id, event, names),
        Audited::Ticket(event) => ticket(id, event, names),
        Audited::User(UserEvent::UserSignedUp { email, .. }) => {
            names.set(User::TYPE, id, email.as_str());
            Described {
                summary: format!("signed up as {email}"),
                target_name: Some(email.to_string()),
                related: None,
            }
        }
        Audited::Other(event_type) => Described {
            summary: event_type.clone(),
            target_name: None,
            related: None,
        },
    }
}

/// A member: a user of the org, named by their email.
fn member(names: &mut Names, user_id: Uuid, email: &str) -> Option<Related> {
    names.set(User::TYPE, user_id, email);
    Some(Related {
        kind: User::TYPE,
        id: user_id.to_string(),
        name: Some(email.to_owned()),
    })
}

/// An invitation: named, and known, by its email.
fn invitation(email: &str) -> Option<Related> {
    Some(Related {
        kind: INVITATION,
        id: email.to_owned(),
        name: Some(email.to_owned()),
    })
}

fn organization(id: Uuid, event: &OrganizationEvent, names: &mut Names) -> Described {
    use OrganizationEvent as E;
    let (summary, related) = match event {
        E::OrganizationCreated {
            name,
            slug,
            owner_id,
            owner_email,
        } => {
            names.set(Organization::TYPE, id, name.as_str());
            (
                format!("created organization {name} ({slug})", name = name.as_str()),
                member(names, *owner_id, owner_email.as_str()),
            )
        }
        E::MemberAdded {
            user_id,
            email,
            role,
        } => (
            format!("added {email} as {}", role.as_str()),
            member(names, *user_id, email.as_str()),
        ),
        E::MemberInvited { email, role, .. } => (
            format!("invited {email} as {}", role.as_str()),
            invitation(email.as_str()),
        ),
        E::InvitationAccepted {
            user_id,
            email,
            role,
        } => (
            format!("{email} accepted the invitation as {}", role.as_str()),
            member(names, *user_id, email.as_str()),
        ),
        E::InvitationRevoked { email } => (
            format!("revoked the invitation of {email}"),
            invitation(email.as_str()),
        ),
        E::MemberRoleChanged {
            user_id,
            email,
            from,
            role,
        } => (
            format!(
                "changed {email} from {} to {}",
                from.as_str(),
                role.as_str()
            ),
            member(names, *user_id, email.as_str()),
        ),
        E::MemberRemoved { user_id, email } => (
            format!("removed {email}"),
            member(names, *user_id, email.as_str()),
        ),
    };
    Described {
        summary,
        target_name: names.get(Organization::TYPE, id).map(str::to_owned),
        related,
    }
}

fn server(id: Uuid, event: &ServerEvent, names: &mut Names) -> Described {
    let summary = match event {
        ServerEvent::ServerCreated { config, .. } => {
            names.set(Server::TYPE, id, config.name.as_str());
            format!("created server {} ({})", config.name.as_str(), config.slug)
        }
        ServerEvent::ServerUpdated { config } => {
            let before = names.get(Server::TYPE, id).map(str::to_owned);
            names.set(Server::TYPE, id, config.name.as_str());
            let now = config.name.as_str();
            match before {
                Some(before) if before != now => {
                    format!(
                        "updated server {now} ({}), renamed from {before}",
                        config.slug
                    )
                }
                _ => format!("updated server {now} ({})", config.slug),
            }
        }
        ServerEvent::ServerArchived { slug } => match names.get(Server::TYPE, id) {
            Some(name) => format!("archived server {name} ({slug})"),
            None => format!("archived server {slug}"),
        },
        ServerEvent::TrackingSecretCreated { secret } => {
            let server = names.get(Server::TYPE, id).unwrap_or("a server");
            format!("created tracking secret {}… of {server}", secret.prefix)
        }
        ServerEvent::TrackingSecretRevoked { secret_id } => {
            let server = names.get(Server::TYPE, id).unwrap_or("a server");
            format!("revoked tracking secret {secret_id} of {server}")
        }
    };
    Described {
        summary,
        target_name: names.get(Server::TYPE, id).map(str::to_owned),
        related: None,
    }
}

fn identity_provider(id: Uuid, event: &ProviderEvent, names: &mut Names) -> Described {
    let summary = match event {
        ProviderEvent::IdentityProviderCreated { config, .. } => {
            names.set(IdentityProvider::TYPE, id, config.name.as_str());
            format!(
                "added identity provider {} ({})",
                config.name.as_str(),
                config.kind.as_str()
            )
        }
        ProviderEvent::IdentityProviderUpdated {
            config,
            client_secret_changed,
        } => {
            names.set(IdentityProvider::TYPE, id, config.name.as_str());
            let secret = if *client_secret_changed {
                ", with a new client secret"
            } else {
                ""
            };
            format!("updated identity provider {}{secret}", config.name.as_str())
        }
        ProviderEvent::IdentityProviderDeleted { name } => {
            format!("deleted identity provider {}", name.as_str())
        }
    };
    Described {
        summary,
        target_name: names.get(IdentityProvider::TYPE, id).map(str::to_owned),
        related: None,
    }
}

/// A server named in a sentence: by its name, or by its id if this log never saw it named.
fn server_related(names: &Names, server_id: Uuid) -> Related {
    Related {
        kind: Server::TYPE,
        id: server_id.to_string(),
        name: names.get(Server::TYPE, server_id).map(str::to_owned),
    }
}

fn server_label(server: &Related) -> String {
    server.name.clone().unwrap_or_else(|| server.id.to_string())
}

fn walkthrough(id: Uuid, event: &WalkthroughEvent, names: &mut Names) -> Described {
    use WalkthroughEvent as E;
    let before = names.get(Walkthrough::TYPE, id).map(str::to_owned);
    // ` "Quickstart"` after a noun, or nothing if this log never saw its title.
    let title = |prefix: &str| {
        before
            .as_deref()
            .map(|t| format!("{prefix}\"{t}\""))
            .unwrap_or_default()
    };
    let mut related = None;
    let summary = match event {
        E::WalkthroughCreated { title, .. } => {
            names.set(Walkthrough::TYPE, id, title);
            format!("created walkthrough \"{title}\"")
        }
        E::WalkthroughDetailsChanged { title: now, .. } => {
            names.set(Walkthrough::TYPE, id, now);
            match before.as_deref() {
                Some(before) if before != now => {
                    format!("renamed the walkthrough \"{before}\" to \"{now}\"")
                }
                Some(_) => format!("changed the description of \"{now}\""),
                None => format!("changed the details of the walkthrough \"{now}\""),
            }
        }
        E::StepAdded { step, .. } => format!("added step \"{}\"{}", step.title, title(" to ")),
        E::StepEdited { step, .. } => format!("edited step \"{}\"{}", step.title, title(" of ")),
        E::StepRemoved { .. } => format!("removed a step{}", title(" from ")),
        E::StepMoved { .. } => format!("moved a step{}", title(" of ")),
        E::WalkthroughPublished { version, title, .. } => {
            format!("published version {version} of \"{title}\"")
        }
        E::WalkthroughUnpublished { version } => {
            format!("unpublished version {version}{}", title(" of "))
        }
        E::WalkthroughRepublished { version } => {
            format!("published version {version}{} again", title(" of "))
        }
        E::WalkthroughArchived => format!("archived the walkthrough{}", title(" ")),
        E::WalkthroughAssigned { server_id, .. } => {
            let server = server_related(names, *server_id);
            let text = format!(
                "put the walkthrough{} on server {}",
                title(" "),
                server_label(&server)
            );
            related = Some(server);
            text
        }
        E::WalkthroughAssignmentChanged {
            server_id,
            display_order,
            enabled,
        } => {
            let server = server_related(names, *server_id);
            let text = format!(
                "changed the place of the walkthrough{} on server {} (order {display_order}, {})",
                title(" "),
                server_label(&server),
                if *enabled { "enabled" } else { "disabled" }
            );
            related = Some(server);
            text
        }
        E::WalkthroughUnassigned { server_id } => {
            let server = server_related(names, *server_id);
            let text = format!(
                "took the walkthrough{} off server {}",
                title(" "),
                server_label(&server)
            );
            related = Some(server);
            text
        }
    };
    Described {
        summary,
        target_name: names.get(Walkthrough::TYPE, id).map(str::to_owned),
        related,
    }
}

fn ticket(id: Uuid, event: &TicketEvent, names: &mut Names) -> Described {
    let reference = domain::ticket::reference(id);
    let mut related = None;
    let summary = match event {
        TicketEvent::TicketOpened {
            server_id, title, ..
        } => {
            let server = server_related(names, *server_id);
            let text = format!(
                "opened ticket {reference} \"{title}\" on server {}",
                server_label(&server)
            );
            related = Some(server);
            text
        }
        TicketEvent::TicketStatusChanged { from, to, .. } => format!(
            "moved ticket {reference} from {} to {}",
            from.as_str(),
            to.as_str()
        ),
        TicketEvent::TicketCommented { .. } => format!("commented on ticket {reference}"),
        TicketEvent::TicketAssigned { member_id, .. } => {
            let email = names.get(User::TYPE, *member_id).map(str::to_owned);
            let text = format!(
                "assigned ticket {reference} to {}",
                email.clone().unwrap_or_else(|| member_id.to_string())
            );
            related = Some(Related {
                kind: User::TYPE,
                id: member_id.to_string(),
                name: email,
            });
            text
        }
        TicketEvent::TicketUnassigned { .. } => {
            format!("took ticket {reference} off its assignee")
        }
    };
    Described {
        summary,
        target_name: Some(reference),
        related,
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// Pass it as `before` for the entries before this one.
    #[schema(value_type = String)]
    pub cursor: Cursor,
    pub event_id: Uuid,
    #[serde(with = "domain::time::rfc3339")]
    pub occurred_at: DateTime<Utc>,
    pub actor: AuditActor,
    pub action: String,
    pub target: AuditTarget,
    /// The other thing the entry names, if any: the server a walkthrough was put on or a ticket
    /// opened on, the member a ticket was assigned to, the member added, changed or removed
    /// (`user`), the email invited or whose invitation was revoked (`invitation`, its id the
    /// email).
    pub related: Option<AuditTarget>,
    pub summary: String,
    pub request_id: Option<String>,
    pub client_ip: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditActor {
    pub kind: String,
    pub id: Option<Uuid>,
    pub email: Option<String>,
}

/// A thing an entry is about: its type (an aggregate type), id, and name when it happened
/// (`TCK-…` for a ticket); no name for entries written before names were kept.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditTarget {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    pub name: Option<String>,
}

/// Newest first, `limit` entries older than `before`.
pub async fn page(
    pool: &PgPool,
    org: OrgId,
    before: Option<Cursor>,
    limit: i64,
) -> Result<Vec<AuditEntry>, sqlx::Error> {
    let before = before.unwrap_or(Cursor::new(i64::MAX, i64::MAX));
    let rows = sqlx::query(
        "SELECT a.transaction_id::text::bigint AS tx, a.global_position, a.event_id, a.occurred_at, \
         a.actor_kind, a.actor_id, u.email AS actor_email, a.action, a.target_type, a.target_id, \
         a.target_name, a.related_type, a.related_id, a.related_name, \
         a.summary, a.request_id, a.client_ip \
         FROM rm_audit_log a LEFT JOIN rm_platform_users u ON u.user_id = a.actor_id \
         WHERE a.org_id = $1 AND (a.transaction_id, a.global_position) < ($2::text::xid8, $3) \
         ORDER BY a.transaction_id DESC, a.global_position DESC LIMIT $4",
    )
    .bind(org.0)
    .bind(before.transaction_id.to_string())
    .bind(before.global_position)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            let related_type: Option<String> = r.try_get("related_type")?;
            let related_id: Option<String> = r.try_get("related_id")?;
            Ok(AuditEntry {
                cursor: Cursor::new(r.try_get("tx")?, r.try_get("global_position")?),
                event_id: r.try_get("event_id")?,
                occurred_at: r.try_get("occurred_at")?,
                actor: AuditActor {
                    kind: r.try_get("actor_kind")?,
                    id: r.try_get("actor_id")?,
                    email: r.try_get("actor_email")?,
                },
                action: r.try_get("action")?,
                target: AuditTarget {
                    kind: r.try_get("target_type")?,
                    id: r.try_get("target_id")?,
                    name: r.try_get("target_name")?,
                },
                related: match (related_type, related_id) {
                    (Some(kind), Some(id)) => Some(AuditTarget {
                        kind,
                        id,
                        name: r.try_get("related_name")?,
                    }),
                    _ => None,
                },
                summary: r.try_get("summary")?,
                request_id: r.try_get("request_id")?,
                client_ip: r.try_get("client_ip")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::metadata::Actor;
    use domain::server::ServerConfig;
    use domain::ticket::TicketStatus;
    use domain::values::{AuthMode, Email, Name, Role, Slug};
    use domain::walkthrough::StepContent;

    /// Describes events of one aggregate in order, as the projection does.
    fn sentences(names: &mut Names, id: Uuid, events: Vec<Audited>) -> Vec<Described> {
        events.iter().map(|e| describe(id, e, names)).collect()
    }

    fn server_config(name: &str, slug: &str) -> ServerConfig {
        ServerConfig {
            name: Name::parse(name).unwrap(),
            slug: Slug::parse(slug).unwrap(),
            auth_mode: AuthMode::default(),
            support_tool: true,
            walkthrough_tools: true,
            conformance_fixtures: false,
            require_signed_tracking: false,
            identity_provider_id: None,
        }
    }

    fn step(title: &str) -> StepContent {
        StepContent {
            title: title.into(),
            content: String::new(),
            agent_instructions: None,
            operations: Vec::new(),
        }
    }

    #[test]
    fn servers_are_named_as_they_were_when_it_happened() {
        let mut names = Names::default();
        let id = Uuid::from_u128(1);
        let said = sentences(
            &mut names,
            id,
            vec![
                Audited::Server(ServerEvent::ServerCreated {
                    org_id: Uuid::nil(),
                    config: server_config("Docs", "acme-docs"),
                }),
                Audited::Server(ServerEvent::ServerUpdated {
                    config: server_config("Docs", "acme-docs"),
                }),
                Audited::Server(ServerEvent::ServerUpdated {
                    config: server_config("Handbook", "acme-docs"),
                }),
                Audited::Server(ServerEvent::ServerArchived {
                    slug: Slug::parse("acme-docs").unwrap(),
                }),
            ],
        );
        let summaries: Vec<&str> = said.iter().map(|d| d.summary.as_str()).collect();
        assert_eq!(
            summaries,
            [
                "created server Docs (acme-docs)",
                "updated server Docs (acme-docs)",
                "updated server Handbook (acme-docs), renamed from Docs",
                "archived server Handbook (acme-docs)",
            ]
        );
        let targets: Vec<_> = said.iter().map(|d| d.target_name.as_deref()).collect();
        assert_eq!(
            targets,
            [
                Some("Docs"),
                Some("Docs"),
                Some("Handbook"),
                Some("Handbook")
            ]
        );
    }

    #[test]
    fn walkthrough_and_ticket_events_read_as_sentences() {
        let mut names = Names::default();
        let server = Uuid::from_u128(7);
        names.set(Server::TYPE, server, "Docs");
        let walkthrough = Uuid::from_u128(2);
        let said = sentences(
            &mut names,
            walkthrough,
            vec![
                Audited::Walkthrough(WalkthroughEvent::WalkthroughCreated {
                    org_id: Uuid::nil(),
                    title: "Quickstart".into(),
                    description: None,
                }),
                Audited::Walkthrough(WalkthroughEvent::StepAdded {
                    step_id: Uuid::nil(),
                    after_step_id: None,
                    step: step("Install"),
                }),
                Audited::Walkthrough(WalkthroughEvent::WalkthroughPublished {
                    version: 2,
                    title: "Quickstart".into(),
                    description: None,
                    steps: Vec::new(),
                }),
                Audited::Walkthrough(WalkthroughEvent::WalkthroughAssigned {
                    server_id: server,
                    display_order: 1,
                    enabled: true,
                }),
                Audited::Walkthrough(WalkthroughEvent::WalkthroughDetailsChanged {
                    title: "First steps".into(),
                    description: None,
                }),
                Audited::Walkthrough(WalkthroughEvent::WalkthroughAssignmentChanged {
                    server_id: server,
                    display_order: 3,
                    enabled: false,
                }),
                Audited::Walkthrough(WalkthroughEvent::WalkthroughRepublished { version: 2 }),
                Audited::Walkthrough(WalkthroughEvent::WalkthroughUnassigned { server_id: server }),
                Audited::Walkthrough(WalkthroughEvent::WalkthroughArchived),
            ],
        );
        let summaries: Vec<&str> = said.iter().map(|d| d.summary.as_str()).collect();
        assert_eq!(
            summaries,
            [
                "created walkthrough \"Quickstart\"",
                "added step \"Install\" to \"Quickstart\"",
                "published version 2 of \"Quickstart\"",
                "put the walkthrough \"Quickstart\" on server Docs",
                "renamed the walkthrough \"Quickstart\" to \"First steps\"",
                "changed the place of the walkthrough \"First steps\" on server Docs (order 3, disabled)",
                "published version 2 of \"First steps\" again",
                "took the walkthrough \"First steps\" off server Docs",
                "archived the walkthrough \"First steps\"",
            ]
        );
        assert_eq!(
            said[3].related,
            Some(Related {
                kind: Server::TYPE,
                id: server.to_string(),
                name: Some("Docs".into())
            })
        );
        assert_eq!(said[3].target_name.as_deref(), Some("Quickstart"));
        assert_eq!(said[4].target_name.as_deref(), Some("First steps"));

        // A ticket is named by its reference; its assignee by the email they joined with.
        let org = Uuid::from_u128(3);
        let bob = Uuid::from_u128(4);
        describe(
            org,
            &Audited::Organization(OrganizationEvent::MemberAdded {
                user_id: bob,
                email: Email::parse("bob@acme.dev").unwrap(),
                role: Role::Member,
            }),
            &mut names,
        );
        let ticket = Uuid::parse_str("1a2b3c4d-0000-4000-8000-000000000000").unwrap();
        let said = sentences(
            &mut names,
            ticket,
            vec![
                Audited::Ticket(TicketEvent::TicketOpened {
                    org_id: org,
                    server_id: server,
                    end_user_id: None,
                    title: "Login fails".into(),
                    description: String::new(),
                    email: None,
                    context: None,
                }),
                Audited::Ticket(TicketEvent::TicketStatusChanged {
                    from: TicketStatus::New,
                    to: TicketStatus::InProgress,
                    by: Actor::System,
                }),
                Audited::Ticket(TicketEvent::TicketAssigned {
                    member_id: bob,
                    by: Actor::System,
                }),
                Audited::Ticket(TicketEvent::TicketCommented {
                    by: Actor::System,
                    body: "on it".into(),
                }),
                Audited::Ticket(TicketEvent::TicketUnassigned { by: Actor::System }),
            ],
        );
        let summaries: Vec<&str> = said.iter().map(|d| d.summary.as_str()).collect();
        assert_eq!(
            summaries,
            [
                "opened ticket TCK-1A2B3C4D \"Login fails\" on server Docs",
                "moved ticket TCK-1A2B3C4D from new to in_progress",
                "assigned ticket TCK-1A2B3C4D to bob@acme.dev",
                "commented on ticket TCK-1A2B3C4D",
                "took ticket TCK-1A2B3C4D off its assignee",
            ]
        );
        assert!(said
            .iter()
            .all(|d| d.target_name.as_deref() == Some("TCK-1A2B3C4D")));
        assert_eq!(
            said[2].related,
            Some(Related {
                kind: User::TYPE,
                id: bob.to_string(),
                name: Some("bob@acme.dev".into())
            })
        );
    }

    /// An invitation is named as the members are, by its email, which is also its id: it has
    /// no other until someone signs up with it.
    #[test]
    fn an_invitation_is_named_by_its_email() {
        let mut names = Names::default();
        let org = Uuid::from_u128(3);
        let email = Email::parse("later@acme.dev").unwrap();
        let said = sentences(
            &mut names,
            org,
            vec![
                Audited::Organization(OrganizationEvent::MemberInvited {
                    email: email.clone(),
                    role: Role::Admin,
                    token_hash: None,
                    expires_at: None,
                }),
                Audited::Organization(OrganizationEvent::InvitationRevoked { email }),
            ],
        );
        let invitation = Some(Related {
            kind: INVITATION,
            id: "later@acme.dev".into(),
            name: Some("later@acme.dev".into()),
        });
        assert_eq!(said[0].summary, "invited later@acme.dev as admin");
        assert_eq!(said[0].related, invitation);
        assert_eq!(said[1].related, invitation);
    }

    #[test]
    fn what_this_log_never_saw_named_reads_by_id() {
        let mut names = Names::default();
        let server = Uuid::from_u128(9);
        let said = describe(
            Uuid::from_u128(2),
            &Audited::Walkthrough(WalkthroughEvent::WalkthroughAssigned {
                server_id: server,
                display_order: 0,
                enabled: true,
            }),
            &mut names,
        );
        assert_eq!(
            said.summary,
            format!("put the walkthrough on server {server}")
        );
        assert_eq!(said.target_name, None);
        assert_eq!(said.related.and_then(|r| r.name), None);
    }
}
