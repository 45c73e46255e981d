//! An organization (a customer company): its members, their roles and pending invitations.
//!
//! An invitation grants nothing until it is accepted with its token (a secret the inviter is
//! shown once, known here only by its sha256 hash), before it expires, by the account of the
//! invited email. Inviting an email again replaces the earlier token.

use crate::values::{Email, Name, Role, Slug};
use crate::{Aggregate, DomainEvent};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub email: Email,
    pub role: Role,
}

/// A pending invitation of one email.
#[derive(Debug, Clone, PartialEq)]
pub struct Invitation {
    pub role: Role,
    /// The sha256 hash of its token. `None` for an invitation sent before invitations had
    /// tokens: it can be revoked or sent again, never accepted.
    pub token_hash: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Default, Clone)]
pub struct Organization {
    pub created: bool,
    pub name: Option<Name>,
    pub slug: Option<Slug>,
    pub members: BTreeMap<Uuid, Member>,
    /// Pending invitations by email.
    pub invitations: BTreeMap<String, Invitation>,
}

impl Organization {
    /// The role of a user in this org, if they are a member.
    pub fn role_of(&self, user_id: Uuid) -> Option<Role> {
        self.members.get(&user_id).map(|m| m.role)
    }

    /// The email's pending invitation, if any.
    pub fn invitation(&self, email: &Email) -> Option<&Invitation> {
        self.invitations.get(email.as_str())
    }

    fn owner_count(&self) -> usize {
        self.members
            .values()
            .filter(|m| m.role == Role::Owner)
            .count()
    }

    /// Owners and admins manage members; only owners grant, change or remove ownership.
    fn authorize(&self, actor_id: Uuid, target_role: Role) -> Result<Role, OrganizationError> {
        let actor_role = self
            .role_of(actor_id)
            .ok_or(OrganizationError::NotAMember)?;
        if !actor_role.can_manage() {
            return Err(OrganizationError::NotAllowed);
        }
        if target_role == Role::Owner && actor_role != Role::Owner {
            return Err(OrganizationError::NotAllowed);
        }
        Ok(actor_role)
    }
}

#[derive(Debug, Clone)]
pub enum OrganizationCommand {
    Create {
        name: Name,
        slug: Slug,
        owner_id: Uuid,
        owner_email: Email,
    },
    /// Invites an email, whether it has an account or not: the invitation grants nothing
    /// until accepted with its token. Inviting an email again replaces the earlier invitation.
    Invite {
        actor_id: Uuid,
        email: Email,
        role: Role,
        /// The sha256 hash of the invitation's token (the token itself is never stored).
        token_hash: String,
        expires_at: DateTime<Utc>,
    },
    /// The account `user_id`, whose email is `email`, presents an invitation's token.
    AcceptInvitation {
        user_id: Uuid,
        email: Email,
        token_hash: String,
        now: DateTime<Utc>,
    },
    ChangeRole {
        actor_id: Uuid,
        user_id: Uuid,
        role: Role,
    },
    RemoveMember {
        actor_id: Uuid,
        user_id: Uuid,
    },
    RevokeInvitation {
        actor_id: Uuid,
        email: Email,
    },
}

#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, strum::IntoStaticStr, strum::VariantNames,
)]
pub enum OrganizationEvent {
    OrganizationCreated {
        name: Name,
        slug: Slug,
        owner_id: Uuid,
        owner_email: Email,
    },
    MemberAdded {
        user_id: Uuid,
        email: Email,
        role: Role,
    },
    MemberInvited {
        email: Email,
        role: Role,
        /// The sha256 hash of the invitation's token (absent from invitations sent before
        /// tokens, which cannot be accepted).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token_hash: Option<String>,
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            with = "crate::time::rfc3339_option"
        )]
        expires_at: Option<DateTime<Utc>>,
    },
    InvitationAccepted {
        user_id: Uuid,
        email: Email,
        role: Role,
    },
    InvitationRevoked {
        email: Email,
    },
    MemberRoleChanged {
        user_id: Uuid,
        email: Email,
        from: Role,
        role: Role,
    },
    MemberRemoved {
        user_id: Uuid,
        email: Email,
    },
}

impl DomainEvent for OrganizationEvent {
    fn event_type(&self) -> &'static str {
        self.into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrganizationError {
    #[error("organization not found")]
    NotFound,
    #[error("organization already exists")]
    AlreadyExists,
    #[error("you are not a member of this organization")]
    NotAMember,
    #[error("only owners and admins manage members, and only owners manage owners")]
    NotAllowed,
    #[error("this user is already a member")]
    AlreadyMember,
    #[error("no such member")]
    NoSuchMember,
    #[error("no invitation for this email")]
    NoInvitation,
    /// The token is not one of a pending invitation: never issued, used, revoked or replaced.
    #[error("no pending invitation has this token: it was never issued, or was used, revoked or replaced")]
    UnknownInvitation,
    #[error("this invitation has expired: ask for a new one")]
    InvitationExpired,
    #[error("this invitation is for another email address: sign in with the invited address")]
    InvitationForAnotherEmail,
    #[error("the last owner cannot be removed or demoted")]
    LastOwner,
}

impl Aggregate for Organization {
    const TYPE: &'static str = "organization";
    type Command = OrganizationCommand;
    type Event = OrganizationEvent;
    type Error = OrganizationError;

    fn handle(
        &self,
        command: OrganizationCommand,
    ) -> Result<Vec<OrganizationEvent>, OrganizationError> {
        use OrganizationCommand as C;
        use OrganizationError as E;
        use OrganizationEvent as Ev;
        if !self.created && !matches!(command, C::Create { .. }) {
            return Err(E::NotFound);
        }
        match command {
            C::Create {
                name,
                slug,
                owner_id,
                owner_email,
            } => {
                if self.created {
                    return Err(E::AlreadyExists);
                }
                Ok(vec![Ev::OrganizationCreated {
                    name,
                    slug,
                    owner_id,
                    owner_email,
                }])
            }
            C::Invite {
                actor_id,
                email,
                role,
                token_hash,
                expires_at,
            } => {
                // Replacing an invitation takes the right to manage the one it replaces.
                let replaced = self.invitation(&email).map_or(role, |i| i.role);
                self.authorize(actor_id, role.max(replaced))?;
                if self.members.values().any(|m| m.email == email) {
                    return Err(E::AlreadyMember);
                }
                // A pending invitation is revoked first, so its token stops working and every
                // projection sees one invitation replaced by another.
                let mut events = Vec::with_capacity(2);
                if self.invitation(&email).is_some() {
                    events.push(Ev::InvitationRevoked {
                        email: email.clone(),
                    });
                }
                events.push(Ev::MemberInvited {
                    email,
                    role,
                    token_hash: Some(token_hash),
                    expires_at: Some(expires_at),
                });
                Ok(events)
            }
            C::AcceptInvitation {
                user_id,
                email,
                token_hash,
                now,
            } => {
                let (invited, invitation) = self
                    .invitations
                    .iter()
                    .find(|(_, i)| i.token_hash.as_deref() == Some(token_hash.as_str()))
                    .ok_or(E::UnknownInvitation)?;
                if invitation.expires_at.is_none_or(|at| at <= now) {
                    return Err(E::InvitationExpired);
                }
                if invited.as_str() != email.as_str() {
                    return Err(E::InvitationForAnotherEmail);
                }
                if self.members.contains_key(&user_id) {
                    return Err(E::AlreadyMember);
                }
                Ok(vec![Ev::InvitationAccepted {
                    user_id,
                    email,
                    role: invitation.role,
                }])
            }
            C::ChangeRole {
                actor_id,
                user_id,
                role,
            } => {
                let member = self.members.get(&user_id).ok_or(E::NoSuchMember)?;
                // Touching an owner, or making one, takes an owner.
                self.authorize(actor_id, role.max(member.role))?;
                if member.role == role {
                    return Ok(vec![]);
                }
                if member.role == Role::Owner && self.owner_count() == 1 {
                    return Err(E::LastOwner);
                }
                Ok(vec![Ev::MemberRoleChanged {
                    user_id,
                    email: member.email.clone(),
                    from: member.role,
                    role,
                }])
            }
            C::RemoveMember { actor_id, user_id } => {
                let member = self.members.get(&user_id).ok_or(E::NoSuchMember)?;
                // Anyone may leave; removing someone else takes a manager.
                if actor_id != user_id {
                    self.authorize(actor_id, member.role)?;
                }
                if member.role == Role::Owner && self.owner_count() == 1 {
                    return Err(E::LastOwner);
                }
                Ok(vec![Ev::MemberRemoved {
                    user_id,
                    email: member.email.clone(),
                }])
            }
            C::RevokeInvitation { actor_id, email } => {
                let role = self.invitation(&email).ok_or(E::NoInvitation)?.role;
                self.authorize(actor_id, role)?;
                Ok(vec![Ev::InvitationRevoked { email }])
            }
        }
    }

    fn apply(&mut self, event: &OrganizationEvent) {
        use OrganizationEvent as Ev;
        match event {
            Ev::OrganizationCreated {
                name,
                slug,
                owner_id,
                owner_email,
            } => {
                self.created = true;
                self.name = Some(name.clone());
                self.slug = Some(slug.clone());
                self.members.insert(
                    *owner_id,
                    Member {
                        email: owner_email.clone(),
                        role: Role::Owner,
                    },
                );
            }
            Ev::MemberAdded {
                user_id,
                email,
                role,
            } => {
                self.members.insert(
                    *user_id,
                    Member {
                        email: email.clone(),
                        role: *role,
                    },
                );
            }
            Ev::MemberInvited {
                email,
                role,
                token_hash,
                expires_at,
            } => {
                self.invitations.insert(
                    email.as_str().to_owned(),
                    Invitation {
                        role: *role,
                        token_hash: token_hash.clone(),
                        expires_at: *expires_at,
                    },
                );
            }
            Ev::InvitationAccepted {
                user_id,
                email,
                role,
            } => {
                self.invitations.remove(email.as_str());
                self.members.insert(
                    *user_id,
                    Member {
                        email: email.clone(),
                        role: *role,
                    },
                );
            }
            Ev::InvitationRevoked { email } => {
                self.invitations.remove(email.as_str());
            }
            Ev::MemberRoleChanged { user_id, role, .. } => {
                if let Some(member) = self.members.get_mut(user_id) {
                    member.role = *role;
                }
            }
            Ev::MemberRemoved { user_id, .. } => {
                self.members.remove(user_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::given_when;
    use OrganizationCommand as C;
    use OrganizationError as E;
    use OrganizationEvent as Ev;

    fn email(s: &str) -> Email {
        Email::parse(s).unwrap_or_else(|_| unreachable!())
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn created() -> Vec<Ev> {
        vec![Ev::OrganizationCreated {
            name: Name::parse("Acme").unwrap_or_else(|_| unreachable!()),
            slug: Slug::parse("acme").unwrap_or_else(|_| unreachable!()),
            owner_id: id(1),
            owner_email: email("owner@acme.dev"),
        }]
    }

    fn with_member(role: Role) -> Vec<Ev> {
        let mut events = created();
        events.push(Ev::MemberAdded {
            user_id: id(2),
            email: email("two@acme.dev"),
            role,
        });
        events
    }

    #[test]
    fn commands_on_a_missing_org_are_not_found() {
        let result = given_when::<Organization>(
            &[],
            C::RemoveMember {
                actor_id: id(1),
                user_id: id(1),
            },
        );
        assert_eq!(result.err(), Some(E::NotFound));
    }

    fn at(day: u32) -> DateTime<Utc> {
        chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 1, day, 0, 0, 0).unwrap()
    }

    fn invite(actor: u128, address: &str, role: Role, hash: &str) -> C {
        C::Invite {
            actor_id: id(actor),
            email: email(address),
            role,
            token_hash: hash.to_owned(),
            expires_at: at(8),
        }
    }

    fn accept(user: u128, address: &str, hash: &str, now: DateTime<Utc>) -> C {
        C::AcceptInvitation {
            user_id: id(user),
            email: email(address),
            token_hash: hash.to_owned(),
            now,
        }
    }

    #[test]
    fn an_owner_invites_an_email_known_or_not_and_the_event_carries_only_the_hash() {
        let invited =
            given_when::<Organization>(&created(), invite(1, "new@acme.dev", Role::Admin, "h1"));
        assert!(matches!(
            invited.as_deref(),
            Ok([Ev::MemberInvited { role: Role::Admin, token_hash: Some(h), expires_at: Some(_), .. }])
                if h == "h1"
        ));
    }

    #[test]
    fn members_cannot_manage_and_admins_cannot_make_owners() {
        let as_member = given_when::<Organization>(
            &with_member(Role::Member),
            invite(2, "three@acme.dev", Role::Member, "h"),
        );
        assert_eq!(as_member.err(), Some(E::NotAllowed));
        let admin_grants_owner = given_when::<Organization>(
            &with_member(Role::Admin),
            invite(2, "three@acme.dev", Role::Owner, "h"),
        );
        assert_eq!(admin_grants_owner.err(), Some(E::NotAllowed));
        // Nor can an admin replace an owner's invitation with a lesser one.
        let mut owner_invited = with_member(Role::Admin);
        owner_invited.push(Ev::MemberInvited {
            email: email("boss@acme.dev"),
            role: Role::Owner,
            token_hash: Some("h0".into()),
            expires_at: Some(at(8)),
        });
        let admin_replaces = given_when::<Organization>(
            &owner_invited,
            invite(2, "boss@acme.dev", Role::Member, "h1"),
        );
        assert_eq!(admin_replaces.err(), Some(E::NotAllowed));
        let admin_demotes_owner = given_when::<Organization>(
            &with_member(Role::Admin),
            C::ChangeRole {
                actor_id: id(2),
                user_id: id(1),
                role: Role::Member,
            },
        );
        assert_eq!(admin_demotes_owner.err(), Some(E::NotAllowed));
    }

    #[test]
    fn the_last_owner_stays() {
        let demote = given_when::<Organization>(
            &created(),
            C::ChangeRole {
                actor_id: id(1),
                user_id: id(1),
                role: Role::Admin,
            },
        );
        assert_eq!(demote.err(), Some(E::LastOwner));
        let remove = given_when::<Organization>(
            &created(),
            C::RemoveMember {
                actor_id: id(1),
                user_id: id(1),
            },
        );
        assert_eq!(remove.err(), Some(E::LastOwner));
        // With a second owner, the first may step down.
        let two_owners = with_member(Role::Owner);
        let step_down = given_when::<Organization>(
            &two_owners,
            C::ChangeRole {
                actor_id: id(1),
                user_id: id(1),
                role: Role::Member,
            },
        );
        assert!(matches!(
            step_down.as_deref(),
            Ok([Ev::MemberRoleChanged { .. }])
        ));
    }

    fn invited(address: &str, role: Role, hash: &str) -> Vec<Ev> {
        let mut given = created();
        given.push(Ev::MemberInvited {
            email: email(address),
            role,
            token_hash: Some(hash.to_owned()),
            expires_at: Some(at(8)),
        });
        given
    }

    #[test]
    fn an_invitation_is_accepted_once_with_its_token() {
        let mut given = invited("new@acme.dev", Role::Admin, "h1");
        let events = given_when::<Organization>(&given, accept(9, "new@acme.dev", "h1", at(2)))
            .unwrap_or_default();
        assert!(matches!(
            events.as_slice(),
            [Ev::InvitationAccepted {
                role: Role::Admin,
                ..
            }]
        ));
        given.extend(events);
        let mut org = Organization::default();
        given.iter().for_each(|e| org.apply(e));
        assert_eq!(org.role_of(id(9)), Some(Role::Admin));
        assert_eq!(
            given_when::<Organization>(&given, accept(9, "new@acme.dev", "h1", at(2))).err(),
            Some(E::UnknownInvitation)
        );
    }

    /// The finding: inviting an existing account as owner made it an owner at once.
    #[test]
    fn an_invitation_alone_grants_nothing() {
        let events = given_when::<Organization>(
            &with_member(Role::Member),
            invite(1, "known@acme.dev", Role::Owner, "h1"),
        )
        .unwrap_or_default();
        let mut org = Organization::default();
        with_member(Role::Member)
            .iter()
            .chain(&events)
            .for_each(|e| org.apply(e));
        assert!(!org
            .members
            .values()
            .any(|m| m.email.as_str() == "known@acme.dev"));
        assert_eq!(org.owner_count(), 1);
    }

    #[test]
    fn a_wrong_expired_or_misaddressed_token_is_refused() {
        let given = invited("new@acme.dev", Role::Member, "h1");
        let refused = |command| given_when::<Organization>(&given, command).err();
        assert_eq!(
            refused(accept(9, "new@acme.dev", "h2", at(2))),
            Some(E::UnknownInvitation)
        );
        assert_eq!(
            refused(accept(9, "new@acme.dev", "h1", at(8))),
            Some(E::InvitationExpired)
        );
        assert_eq!(
            refused(accept(9, "other@acme.dev", "h1", at(2))),
            Some(E::InvitationForAnotherEmail)
        );
        // An invitation sent before tokens existed is never accepted.
        let mut old = created();
        old.push(Ev::MemberInvited {
            email: email("old@acme.dev"),
            role: Role::Owner,
            token_hash: None,
            expires_at: None,
        });
        assert_eq!(
            given_when::<Organization>(&old, accept(9, "old@acme.dev", "", at(2))).err(),
            Some(E::UnknownInvitation)
        );
    }

    #[test]
    fn inviting_again_replaces_the_token() {
        let mut given = invited("new@acme.dev", Role::Member, "h1");
        let again =
            given_when::<Organization>(&given, invite(1, "new@acme.dev", Role::Admin, "h2"))
                .unwrap_or_default();
        assert!(matches!(
            again.as_slice(),
            [Ev::InvitationRevoked { .. }, Ev::MemberInvited { .. }]
        ));
        given.extend(again);
        assert_eq!(
            given_when::<Organization>(&given, accept(9, "new@acme.dev", "h1", at(2))).err(),
            Some(E::UnknownInvitation)
        );
        assert!(matches!(
            given_when::<Organization>(&given, accept(9, "new@acme.dev", "h2", at(2))).as_deref(),
            Ok([Ev::InvitationAccepted {
                role: Role::Admin,
                ..
            }])
        ));
    }

    #[test]
    fn members_are_not_invited() {
        let again = given_when::<Organization>(
            &with_member(Role::Member),
            invite(1, "two@acme.dev", Role::Member, "h"),
        );
        assert_eq!(again.err(), Some(E::AlreadyMember));
    }

    #[test]
    fn invitations_recorded_before_tokens_still_read() {
        let old: OrganizationEvent = serde_json::from_value(serde_json::json!({
            "MemberInvited": { "email": "old@acme.dev", "role": "member" }
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            old,
            Ev::MemberInvited {
                token_hash: None,
                expires_at: None,
                ..
            }
        ));
    }
}
