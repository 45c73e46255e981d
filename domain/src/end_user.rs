//! An end user of an org's hosted MCP servers: known by the tracking ids in their server URLs,
//! by the provider subjects they signed in as (the org's identity providers), and by emails,
//! each with who said it. A person is never matched across orgs.
//!
//! Identity stitching: when two end users of one org turn out to be one person (a signed-in
//! client that also uses a tracking id, an anonymous tracking-id user who signs in, a ticket
//! email equal to a signed-in user's verified email), one is merged into the other. The
//! survivor's stream records [`EndUserEvent::EndUsersMerged`] with the keyed identities that
//! moved to it (tracking ids, provider subjects, verified emails: what the write-side index
//! finds end users by); the merged end user's stream records [`EndUserEvent::EndUserMergedAway`]
//! and refuses commands from then on ([`EndUserError::MergedAway`] names the survivor). An
//! unmerge reverses exactly one merge: [`EndUserEvent::EndUserUnmerged`] on the survivor (the
//! same identities go back) and [`EndUserEvent::EndUserRestored`] on the merged end user.

use crate::values::Email;
use crate::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
/// A tracking id as it appears in `/t/{tracking_id}/mcp`: 1 to 128 characters of letters,
/// digits, `-`, `_` and `.`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TrackingId(String);

impl TrackingId {
    pub fn parse(input: &str) -> Option<Self> {
        let ok = !input.is_empty()
            && input.len() <= 128
            && input
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        ok.then(|| Self(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A subject of one of the org's identity providers (the `sub` of an ID token, or a user API's
/// id): unique per provider.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ProviderSubject {
    pub provider_id: Uuid,
    pub subject: String,
}

/// Who said an email is the end user's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmailSource {
    /// Typed by the end user, in `get_support` (unverified). Emails recorded before sources
    /// were kept came from there.
    #[default]
    GetSupport,
    /// Returned by the org's identity provider on sign-in.
    SignIn,
}

/// Why two end users were merged into one person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum MergeReason {
    /// A signed-in client called with a tracking id of another end user.
    SignedInWithTrackingId,
    /// An anonymous tracking-id user signed in.
    TrackingUserSignedIn,
    /// A support ticket's email equals a signed-in user's verified email.
    TicketEmail,
}

impl MergeReason {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// The identities the write-side index finds an end user by (each a key claimed in it):
/// what moves to the survivor with a merge, and back with its unmerge.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyedIdentities {
    #[serde(default)]
    pub tracking_ids: Vec<TrackingId>,
    #[serde(default)]
    pub subjects: Vec<ProviderSubject>,
    #[serde(default)]
    pub verified_emails: Vec<Email>,
}

impl KeyedIdentities {
    pub fn is_empty(&self) -> bool {
        self.tracking_ids.is_empty() && self.subjects.is_empty() && self.verified_emails.is_empty()
    }

    fn add(&mut self, other: &KeyedIdentities) {
        for t in &other.tracking_ids {
            if !self.tracking_ids.contains(t) {
                self.tracking_ids.push(t.clone());
            }
        }
        for s in &other.subjects {
            if !self.subjects.contains(s) {
                self.subjects.push(s.clone());
            }
        }
        for e in &other.verified_emails {
            if !self.verified_emails.contains(e) {
                self.verified_emails.push(e.clone());
            }
        }
    }

    fn remove(&mut self, other: &KeyedIdentities) {
        self.tracking_ids
            .retain(|t| !other.tracking_ids.contains(t));
        self.subjects.retain(|s| !other.subjects.contains(s));
        self.verified_emails
            .retain(|e| !other.verified_emails.contains(e));
    }
}

/// An end user merged into this one, with the identities that came with them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Absorbed {
    pub end_user_id: Uuid,
    pub identities: KeyedIdentities,
}

#[derive(Debug, Default, Clone)]
pub struct EndUser {
    pub org_id: Option<Uuid>,
    /// Tracking ids first seen as this end user (not those that came with a merge).
    pub tracking_ids: Vec<TrackingId>,
    /// Every email recorded on this stream, verified or not.
    pub emails: Vec<Email>,
    /// The keyed identities this end user holds now: its own and those merges brought.
    pub held: KeyedIdentities,
    /// End users merged into this one, oldest first.
    pub absorbed: Vec<Absorbed>,
    /// Set while this end user is merged into another (the survivor).
    pub merged_into: Option<Uuid>,
    pub sign_ins: u64,
}

impl EndUser {
    /// Whether this end user has signed in with one of the org's identity providers.
    pub fn is_identified(&self) -> bool {
        !self.held.subjects.is_empty()
    }

    /// The identities that are this end user's own (held, less what merges brought).
    pub fn own_identities(&self) -> KeyedIdentities {
        let mut own = self.held.clone();
        for a in &self.absorbed {
            own.remove(&a.identities);
        }
        own
    }
}

/// A sign-in through one of the org's identity providers, as the provider told it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInFacts {
    pub org_id: Uuid,
    pub server_id: Uuid,
    pub provider_id: Uuid,
    pub subject: String,
    pub email: Option<Email>,
    pub email_verified: bool,
    pub name: Option<String>,
    /// Whether the verified email is (or becomes, in this commit) this end user's key in the
    /// index: false when another end user of the org already holds it.
    pub email_keyed: bool,
}

#[derive(Debug, Clone)]
pub enum EndUserCommand {
    /// First sight of a tracking id in an org.
    Identify {
        org_id: Uuid,
        server_id: Uuid,
        tracking_id: TrackingId,
    },
    /// An email the user gave (for example in `get_support`).
    RecordEmail { email: Email },
    /// A sign-in (creates the end user when it is their first).
    SignIn(SignInFacts),
    /// Takes in `merged` (on the survivor, `survivor` being this end user's id) with the
    /// identities it holds.
    Absorb {
        survivor: Uuid,
        merged: Uuid,
        reason: MergeReason,
        identities: KeyedIdentities,
    },
    /// This end user is merged into `survivor` (on the merged one).
    MergeInto { survivor: Uuid, reason: MergeReason },
    /// Gives `merged` back what its merge brought (on the survivor).
    Release { survivor: Uuid, merged: Uuid },
    /// This end user is a person of their own again (on the merged one).
    Restore { survivor: Uuid },
}

#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, strum::IntoStaticStr, strum::VariantNames,
)]
pub enum EndUserEvent {
    EndUserIdentified {
        org_id: Uuid,
        server_id: Uuid,
        tracking_id: TrackingId,
    },
    /// An email the end user gave. Events recorded before sources were kept have only `email`
    /// (typed in `get_support`, unverified).
    EndUserEmailRecorded {
        email: Email,
        #[serde(default)]
        verified: bool,
        #[serde(default)]
        source: EmailSource,
    },
    /// A sign-in through one of the org's identity providers (never any token).
    EndUserSignedIn {
        org_id: Uuid,
        server_id: Uuid,
        provider_id: Uuid,
        subject: String,
        email: Option<Email>,
        email_verified: bool,
        name: Option<String>,
        /// Whether the verified email became a key this end user is found by.
        #[serde(default)]
        email_keyed: bool,
    },
    /// On the survivor: `merged` and the identities it held are now this person's.
    EndUsersMerged {
        survivor: Uuid,
        merged: Uuid,
        reason: MergeReason,
        identities: KeyedIdentities,
    },
    /// On the merged end user: from now on they are `survivor`.
    EndUserMergedAway { survivor: Uuid, reason: MergeReason },
    /// On the survivor: one merge undone; `identities` went back to `merged`.
    EndUserUnmerged {
        survivor: Uuid,
        merged: Uuid,
        identities: KeyedIdentities,
    },
    /// On the merged end user: a person of their own again.
    EndUserRestored { survivor: Uuid },
}

impl DomainEvent for EndUserEvent {
    fn event_type(&self) -> &'static str {
        self.into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndUserError {
    #[error("end user not found")]
    NotFound,
    #[error("this end user belongs to another organization")]
    OtherOrg,
    #[error("this end user was merged into another")]
    MergedAway { survivor: Uuid },
    #[error("that end user was not merged into this one")]
    NotMerged,
    #[error("an end user cannot be merged into themselves")]
    SameEndUser,
}

impl EndUser {
    /// Refuses a command on an end user that is not a person of their own in `org_id`.
    fn live(&self, org_id: Option<Uuid>) -> Result<(), EndUserError> {
        if self.org_id.is_none() {
            return Err(EndUserError::NotFound);
        }
        if org_id.is_some_and(|o| self.org_id != Some(o)) {
            return Err(EndUserError::OtherOrg);
        }
        match self.merged_into {
            Some(survivor) => Err(EndUserError::MergedAway { survivor }),
            None => Ok(()),
        }
    }
}

impl Aggregate for EndUser {
    const TYPE: &'static str = "end_user";
    type Command = EndUserCommand;
    type Event = EndUserEvent;
    type Error = EndUserError;

    fn handle(&self, command: EndUserCommand) -> Result<Vec<EndUserEvent>, EndUserError> {
        match command {
            EndUserCommand::Identify {
                org_id,
                server_id,
                tracking_id,
            } => {
                if self.org_id.is_some_and(|o| o != org_id) {
                    return Err(EndUserError::OtherOrg);
                }
                if self.tracking_ids.contains(&tracking_id)
                    || self.held.tracking_ids.contains(&tracking_id)
                {
                    return Ok(vec![]);
                }
                Ok(vec![EndUserEvent::EndUserIdentified {
                    org_id,
                    server_id,
                    tracking_id,
                }])
            }
            EndUserCommand::RecordEmail { email } => {
                if self.org_id.is_none() {
                    return Err(EndUserError::NotFound);
                }
                if self.emails.contains(&email) {
                    return Ok(vec![]);
                }
                Ok(vec![EndUserEvent::EndUserEmailRecorded {
                    email,
                    verified: false,
                    source: EmailSource::GetSupport,
                }])
            }
            EndUserCommand::SignIn(f) => {
                if self.org_id.is_some() {
                    self.live(Some(f.org_id))?;
                }
                Ok(vec![EndUserEvent::EndUserSignedIn {
                    org_id: f.org_id,
                    server_id: f.server_id,
                    provider_id: f.provider_id,
                    subject: f.subject,
                    email_keyed: f.email_keyed && f.email_verified && f.email.is_some(),
                    email: f.email,
                    email_verified: f.email_verified,
                    name: f.name,
                }])
            }
            EndUserCommand::Absorb {
                survivor,
                merged,
                reason,
                identities,
            } => {
                self.live(None)?;
                if survivor == merged {
                    return Err(EndUserError::SameEndUser);
                }
                if self.absorbed.iter().any(|a| a.end_user_id == merged) {
                    return Ok(vec![]);
                }
                Ok(vec![EndUserEvent::EndUsersMerged {
                    survivor,
                    merged,
                    reason,
                    identities,
                }])
            }
            EndUserCommand::MergeInto { survivor, reason } => {
                if self.merged_into == Some(survivor) {
                    return Ok(vec![]);
                }
                self.live(None)?;
                Ok(vec![EndUserEvent::EndUserMergedAway { survivor, reason }])
            }
            EndUserCommand::Release { survivor, merged } => {
                self.live(None)?;
                let Some(a) = self.absorbed.iter().find(|a| a.end_user_id == merged) else {
                    return Err(EndUserError::NotMerged);
                };
                Ok(vec![EndUserEvent::EndUserUnmerged {
                    survivor,
                    merged,
                    identities: a.identities.clone(),
                }])
            }
            EndUserCommand::Restore { survivor } => {
                if self.org_id.is_none() {
                    return Err(EndUserError::NotFound);
                }
                if self.merged_into != Some(survivor) {
                    return Err(EndUserError::NotMerged);
                }
                Ok(vec![EndUserEvent::EndUserRestored { survivor }])
            }
        }
    }

    fn apply(&mut self, event: &EndUserEvent) {
        match event {
            EndUserEvent::EndUserIdentified {
                org_id,
                tracking_id,
                ..
            } => {
                self.org_id = Some(*org_id);
                self.tracking_ids.push(tracking_id.clone());
                if !self.held.tracking_ids.contains(tracking_id) {
                    self.held.tracking_ids.push(tracking_id.clone());
                }
            }
            EndUserEvent::EndUserEmailRecorded { email, .. } => {
                if !self.emails.contains(email) {
                    self.emails.push(email.clone());
                }
            }
            EndUserEvent::EndUserSignedIn {
                org_id,
                provider_id,
                subject,
                email,
                email_keyed,
                ..
            } => {
                self.org_id = Some(*org_id);
                self.sign_ins += 1;
                let subject = ProviderSubject {
                    provider_id: *provider_id,
                    subject: subject.clone(),
                };
                let mut own = KeyedIdentities {
                    subjects: vec![subject],
                    ..Default::default()
                };
                if let Some(email) = email {
                    if !self.emails.contains(email) {
                        self.emails.push(email.clone());
                    }
                    if *email_keyed {
                        own.verified_emails.push(email.clone());
                    }
                }
                self.held.add(&own);
            }
            EndUserEvent::EndUsersMerged {
                merged, identities, ..
            } => {
                self.held.add(identities);
                self.absorbed.push(Absorbed {
                    end_user_id: *merged,
                    identities: identities.clone(),
                });
            }
            EndUserEvent::EndUserMergedAway { survivor, .. } => {
                self.merged_into = Some(*survivor);
            }
            EndUserEvent::EndUserUnmerged {
                merged, identities, ..
            } => {
                self.held.remove(identities);
                self.absorbed.retain(|a| a.end_user_id != *merged);
            }
            EndUserEvent::EndUserRestored { .. } => self.merged_into = None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::{given_when, replay};

    fn tid(s: &str) -> TrackingId {
        TrackingId::parse(s).unwrap()
    }

    fn identify(org: u128, t: &str) -> EndUserCommand {
        EndUserCommand::Identify {
            org_id: Uuid::from_u128(org),
            server_id: Uuid::nil(),
            tracking_id: tid(t),
        }
    }

    #[test]
    fn tracking_ids_are_url_safe_tokens() {
        assert!(TrackingId::parse("user-42_a.b").is_some());
        assert!(TrackingId::parse("").is_none());
        assert!(TrackingId::parse("a/b").is_none());
        assert!(TrackingId::parse("a b").is_none());
        assert!(TrackingId::parse(&"x".repeat(129)).is_none());
    }

    #[test]
    fn identification_and_emails_are_idempotent_and_org_bound() {
        let first = given_when::<EndUser>(&[], identify(1, "u1")).unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(given_when::<EndUser>(&first, identify(1, "u1")), Ok(vec![]));
        assert_eq!(
            given_when::<EndUser>(&first, identify(2, "u1")).err(),
            Some(EndUserError::OtherOrg)
        );
        let email = || EndUserCommand::RecordEmail {
            email: Email::parse("dev@example.com").unwrap(),
        };
        assert_eq!(
            given_when::<EndUser>(&[], email()).err(),
            Some(EndUserError::NotFound)
        );
        let mut events = first.clone();
        events.extend(given_when::<EndUser>(&first, email()).unwrap());
        assert_eq!(given_when::<EndUser>(&events, email()), Ok(vec![]));
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn sign_in(org: u128, subject: &str, email: Option<&str>, verified: bool) -> EndUserCommand {
        EndUserCommand::SignIn(SignInFacts {
            org_id: id(org),
            server_id: id(50),
            provider_id: id(60),
            subject: subject.to_owned(),
            email: email.map(|e| Email::parse(e).unwrap()),
            email_verified: verified,
            name: Some("Ada".to_owned()),
            email_keyed: true,
        })
    }

    fn history(commands: Vec<EndUserCommand>) -> Vec<EndUserEvent> {
        let mut events = Vec::new();
        for command in commands {
            events.extend(given_when::<EndUser>(&events, command).unwrap());
        }
        events
    }

    #[test]
    fn emails_recorded_before_sources_were_kept_still_read() {
        let old: EndUserEvent =
            serde_json::from_str(r#"{"EndUserEmailRecorded":{"email":"dev@example.com"}}"#)
                .unwrap();
        assert_eq!(
            old,
            EndUserEvent::EndUserEmailRecorded {
                email: Email::parse("dev@example.com").unwrap(),
                verified: false,
                source: EmailSource::GetSupport,
            }
        );
    }

    #[test]
    fn a_sign_in_creates_the_end_user_and_keys_only_a_verified_email() {
        let events = history(vec![sign_in(1, "sub-1", Some("ada@example.com"), true)]);
        let user = replay::<EndUser>(&events);
        assert_eq!(user.org_id, Some(id(1)));
        assert!(user.is_identified());
        assert_eq!(user.held.verified_emails.len(), 1);
        assert_eq!(user.sign_ins, 1);
        let unverified = history(vec![sign_in(1, "sub-1", Some("ada@example.com"), false)]);
        let user = replay::<EndUser>(&unverified);
        assert!(user.held.verified_emails.is_empty());
        assert_eq!(user.emails.len(), 1);
        // Signing in again is another event (sign-ins are counted); another org is refused.
        assert_eq!(
            given_when::<EndUser>(&events, sign_in(1, "sub-1", None, false))
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            given_when::<EndUser>(&events, sign_in(2, "sub-1", None, false)).err(),
            Some(EndUserError::OtherOrg)
        );
    }

    #[test]
    fn given_a_merge_the_survivor_holds_both_and_the_merged_refuses_commands() {
        let tracking = history(vec![identify(1, "t-anon")]);
        let identities = replay::<EndUser>(&tracking).held;
        let survivor = history(vec![sign_in(1, "sub-1", Some("ada@example.com"), true)]);
        let absorb = || EndUserCommand::Absorb {
            survivor: id(10),
            merged: id(11),
            reason: MergeReason::TrackingUserSignedIn,
            identities: identities.clone(),
        };
        let merged = given_when::<EndUser>(&survivor, absorb()).unwrap();
        assert!(matches!(
            &merged[..],
            [EndUserEvent::EndUsersMerged { merged, reason: MergeReason::TrackingUserSignedIn, .. }] if *merged == id(11)
        ));
        let mut after = survivor.clone();
        after.extend(merged);
        // Merging the same end user again records nothing.
        assert_eq!(given_when::<EndUser>(&after, absorb()), Ok(vec![]));
        let state = replay::<EndUser>(&after);
        assert_eq!(state.held.tracking_ids, vec![tid("t-anon")]);
        assert!(state.own_identities().tracking_ids.is_empty());

        let away = given_when::<EndUser>(
            &tracking,
            EndUserCommand::MergeInto {
                survivor: id(10),
                reason: MergeReason::TrackingUserSignedIn,
            },
        )
        .unwrap();
        let mut gone = tracking.clone();
        gone.extend(away);
        assert_eq!(
            given_when::<EndUser>(
                &gone,
                EndUserCommand::MergeInto {
                    survivor: id(10),
                    reason: MergeReason::TicketEmail
                }
            ),
            Ok(vec![])
        );
        assert_eq!(
            given_when::<EndUser>(&gone, sign_in(1, "sub-2", None, false)).err(),
            Some(EndUserError::MergedAway { survivor: id(10) })
        );
        assert_eq!(
            given_when::<EndUser>(
                &gone,
                EndUserCommand::Absorb {
                    survivor: id(11),
                    merged: id(12),
                    reason: MergeReason::TicketEmail,
                    identities: KeyedIdentities::default(),
                }
            )
            .err(),
            Some(EndUserError::MergedAway { survivor: id(10) })
        );
    }

    #[test]
    fn an_unmerge_gives_back_exactly_what_one_merge_brought() {
        let identities = |t: &str| KeyedIdentities {
            tracking_ids: vec![tid(t)],
            ..Default::default()
        };
        let survivor = history(vec![
            identify(1, "own"),
            EndUserCommand::Absorb {
                survivor: id(10),
                merged: id(11),
                reason: MergeReason::SignedInWithTrackingId,
                identities: identities("a"),
            },
            EndUserCommand::Absorb {
                survivor: id(10),
                merged: id(12),
                reason: MergeReason::TicketEmail,
                identities: identities("b"),
            },
        ]);
        let undone = given_when::<EndUser>(
            &survivor,
            EndUserCommand::Release {
                survivor: id(10),
                merged: id(11),
            },
        )
        .unwrap();
        assert_eq!(
            undone,
            vec![EndUserEvent::EndUserUnmerged {
                survivor: id(10),
                merged: id(11),
                identities: identities("a"),
            }]
        );
        let mut after = survivor.clone();
        after.extend(undone);
        let state = replay::<EndUser>(&after);
        assert_eq!(state.held.tracking_ids, vec![tid("own"), tid("b")]);
        assert_eq!(
            given_when::<EndUser>(
                &after,
                EndUserCommand::Release {
                    survivor: id(10),
                    merged: id(11)
                }
            )
            .err(),
            Some(EndUserError::NotMerged)
        );
        // The merged end user is restored only from the survivor it was merged into.
        let merged = history(vec![
            identify(1, "a"),
            EndUserCommand::MergeInto {
                survivor: id(10),
                reason: MergeReason::SignedInWithTrackingId,
            },
        ]);
        assert_eq!(
            given_when::<EndUser>(&merged, EndUserCommand::Restore { survivor: id(99) }).err(),
            Some(EndUserError::NotMerged)
        );
        let restored =
            given_when::<EndUser>(&merged, EndUserCommand::Restore { survivor: id(10) }).unwrap();
        let mut back = merged.clone();
        back.extend(restored);
        assert_eq!(replay::<EndUser>(&back).merged_into, None);
        assert_eq!(replay::<EndUser>(&back).held.tracking_ids, vec![tid("a")]);
    }

    #[test]
    fn an_end_user_is_not_merged_into_themselves() {
        let events = history(vec![identify(1, "a")]);
        assert_eq!(
            given_when::<EndUser>(
                &events,
                EndUserCommand::Absorb {
                    survivor: id(10),
                    merged: id(10),
                    reason: MergeReason::TicketEmail,
                    identities: KeyedIdentities::default(),
                }
            )
            .err(),
            Some(EndUserError::SameEndUser)
        );
    }
}
