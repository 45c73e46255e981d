//! An organization (a customer company): its members, their roles and pending invitations.

use crate::values::{Email, Name, Role, Slug};
use crate::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub email: Email,
    pub role: Role,
}

#[derive(Debug, Default, Clone)]
pub struct Organization {
    pub created: bool,
    pub name: Option<Name>,
    pub slug: Option<Slug>,
    pub members: BTreeMap<Uuid, Member>,
    pub invitations: BTreeMap<String, Role>,
}

impl Organization {
    /// The role of a user in this org, if they are a member.
    pub fn role_of(&self, user_id: Uuid) -> Option<Role> {
        self.members.get(&user_id).map(|m| m.role)
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
    /// Adds a signed-up user (`user_id` known) or invites an email that has no account yet.
    AddMember {
        actor_id: Uuid,
        user_id: Option<Uuid>,
        email: Email,
        role: Role,
    },
    AcceptInvitation {
        user_id: Uuid,
        email: Email,
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
    #[error("this email is already invited")]
    AlreadyInvited,
    #[error("no such member")]
    NoSuchMember,
    #[error("no invitation for this email")]
    NoInvitation,
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
            C::AddMember {
                actor_id,
                user_id,
                email,
                role,
            } => {
                self.authorize(actor_id, role)?;
                match user_id {
                    Some(user_id) => {
                        if self.members.contains_key(&user_id) {
                            return Err(E::AlreadyMember);
                        }
                        Ok(vec![Ev::MemberAdded {
                            user_id,
                            email,
                            role,
                        }])
                    }
                    None => {
                        if self.invitations.contains_key(email.as_str()) {
                            return Err(E::AlreadyInvited);
                        }
                        Ok(vec![Ev::MemberInvited { email, role }])
                    }
                }
            }
            C::AcceptInvitation { user_id, email } => {
                let role = *self
                    .invitations
                    .get(email.as_str())
                    .ok_or(E::NoInvitation)?;
                if self.members.contains_key(&user_id) {
                    return Err(E::AlreadyMember);
                }
                Ok(vec![Ev::InvitationAccepted {
                    user_id,
                    email,
                    role,
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
                let role = *self
                    .invitations
                    .get(email.as_str())
                    .ok_or(E::NoInvitation)?;
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
            Ev::MemberInvited { email, role } => {
                self.invitations.insert(email.as_str().to_owned(), *role);
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

    #[test]
    fn owner_adds_a_member_and_invites_an_unknown_email() {
        let added = given_when::<Organization>(
            &created(),
            C::AddMember {
                actor_id: id(1),
                user_id: Some(id(2)),
                email: email("two@acme.dev"),
                role: Role::Admin,
            },
        );
        assert!(matches!(added.as_deref(), Ok([Ev::MemberAdded { .. }])));
        let invited = given_when::<Organization>(
            &created(),
            C::AddMember {
                actor_id: id(1),
                user_id: None,
                email: email("new@acme.dev"),
                role: Role::Member,
            },
        );
        assert!(matches!(invited.as_deref(), Ok([Ev::MemberInvited { .. }])));
    }

    #[test]
    fn members_cannot_manage_and_admins_cannot_make_owners() {
        let as_member = given_when::<Organization>(
            &with_member(Role::Member),
            C::AddMember {
                actor_id: id(2),
                user_id: Some(id(3)),
                email: email("three@acme.dev"),
                role: Role::Member,
            },
        );
        assert_eq!(as_member.err(), Some(E::NotAllowed));
        let admin_grants_owner = given_when::<Organization>(
            &with_member(Role::Admin),
            C::AddMember {
                actor_id: id(2),
                user_id: Some(id(3)),
                email: email("three@acme.dev"),
                role: Role::Owner,
            },
        );
        assert_eq!(admin_grants_owner.err(), Some(E::NotAllowed));
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

    #[test]
    fn an_invitation_is_accepted_once() {
        let mut given = created();
        given.push(Ev::MemberInvited {
            email: email("new@acme.dev"),
            role: Role::Admin,
        });
        let accept = || C::AcceptInvitation {
            user_id: id(9),
            email: email("new@acme.dev"),
        };
        let events = given_when::<Organization>(&given, accept()).unwrap_or_default();
        assert!(matches!(
            events.as_slice(),
            [Ev::InvitationAccepted {
                role: Role::Admin,
                ..
            }]
        ));
        given.extend(events);
        assert_eq!(
            given_when::<Organization>(&given, accept()).err(),
            Some(E::NoInvitation)
        );
    }

    #[test]
    fn duplicates_are_refused() {
        let again = given_when::<Organization>(
            &with_member(Role::Member),
            C::AddMember {
                actor_id: id(1),
                user_id: Some(id(2)),
                email: email("two@acme.dev"),
                role: Role::Member,
            },
        );
        assert_eq!(again.err(), Some(E::AlreadyMember));
    }
}
