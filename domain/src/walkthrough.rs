//! A walkthrough: an org's interactive tutorial that MCP agents deliver to end users step by
//! step. Authors edit a draft (an ordered list of steps with stable ids); publishing freezes the
//! draft into a new immutable version, which is what end users see. Drafting goes on without
//! touching the published version. A walkthrough is assigned to any number of the org's
//! servers, each with its own display order and an on/off switch.

use crate::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

pub const TITLE_MAX: usize = 200;
pub const DESCRIPTION_MAX: usize = 2_000;
pub const CONTENT_MAX: usize = 50_000;
pub const INSTRUCTIONS_MAX: usize = 20_000;
pub const OPERATIONS_MAX: usize = 50;
pub const OPERATION_MAX: usize = 2_000;
pub const STEPS_MAX: usize = 200;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
pub enum WalkthroughStatus {
    /// Never published.
    #[default]
    Draft,
    Published,
    /// Was published; end users no longer see it.
    Unpublished,
    /// Retired for good: read-only.
    Archived,
}

impl WalkthroughStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Published => "published",
            Self::Unpublished => "unpublished",
            Self::Archived => "archived",
        }
    }
}

/// What an author writes for one step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepContent {
    pub title: String,
    /// Markdown meant for the end user.
    pub content: String,
    /// What the agent should know or say; never shown to the user as such.
    #[serde(default)]
    pub agent_instructions: Option<String>,
    /// Concrete actions the agent should carry out (create a file, run a command).
    #[serde(default)]
    pub operations: Vec<String>,
}

impl StepContent {
    /// Trims and bounds every field; the edge builds steps only through this.
    pub fn parse(
        title: &str,
        content: &str,
        agent_instructions: Option<&str>,
        operations: &[String],
    ) -> Result<Self, WalkthroughError> {
        let operations = if operations.len() > OPERATIONS_MAX {
            return Err(WalkthroughError::TooMany {
                field: "operations",
                max: OPERATIONS_MAX,
            });
        } else {
            operations
                .iter()
                .map(|o| bounded("operations", o, OPERATION_MAX))
                .collect::<Result<Vec<_>, _>>()?
        };
        Ok(Self {
            title: bounded("title", title, TITLE_MAX)?,
            content: bounded("content", content, CONTENT_MAX)?,
            agent_instructions: optional(
                "agent_instructions",
                agent_instructions,
                INSTRUCTIONS_MAX,
            )?,
            operations,
        })
    }
}

/// A partial edit of a step: `None` keeps a field (for the instructions, `Some(None)` clears
/// them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepEdit {
    pub title: Option<String>,
    pub content: Option<String>,
    pub agent_instructions: Option<Option<String>>,
    pub operations: Option<Vec<String>>,
}

impl StepEdit {
    /// The step after this edit, validated like a new one.
    pub fn applied_to(&self, current: &StepContent) -> Result<StepContent, WalkthroughError> {
        let instructions = match &self.agent_instructions {
            Some(value) => value.as_deref(),
            None => current.agent_instructions.as_deref(),
        };
        StepContent::parse(
            self.title.as_deref().unwrap_or(&current.title),
            self.content.as_deref().unwrap_or(&current.content),
            instructions,
            self.operations.as_deref().unwrap_or(&current.operations),
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub id: Uuid,
    #[serde(flatten)]
    pub content: StepContent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub display_order: i32,
    pub enabled: bool,
}

#[derive(Debug, Default, Clone)]
pub struct Walkthrough {
    pub org_id: Option<Uuid>,
    pub title: String,
    pub description: Option<String>,
    pub status: WalkthroughStatus,
    /// The draft, in order.
    pub steps: Vec<Step>,
    /// Number of the newest published version; 0 before the first publish.
    pub version: u32,
    /// The newest published steps, to tell whether the draft changed since.
    pub published: Vec<Step>,
    pub published_title: String,
    pub published_description: Option<String>,
    pub assignments: BTreeMap<Uuid, Assignment>,
}

impl Walkthrough {
    pub fn exists(&self) -> bool {
        self.org_id.is_some()
    }

    fn position(&self, step_id: Uuid) -> Result<usize, WalkthroughError> {
        self.steps
            .iter()
            .position(|s| s.id == step_id)
            .ok_or(WalkthroughError::StepNotFound)
    }
}

#[derive(Debug, Clone)]
pub enum WalkthroughCommand {
    Create {
        org_id: Uuid,
        title: String,
        description: Option<String>,
    },
    ChangeDetails {
        title: Option<String>,
        description: Option<Option<String>>,
    },
    /// After `after_step_id` (`Some(None)`: first); `None`: last.
    AddStep {
        step_id: Uuid,
        after: Option<Option<Uuid>>,
        step: StepContent,
    },
    /// Changes the given fields of a step; the others keep their values.
    EditStep {
        step_id: Uuid,
        edit: StepEdit,
    },
    RemoveStep {
        step_id: Uuid,
    },
    /// After `after_step_id`; `None` makes it the first step.
    MoveStep {
        step_id: Uuid,
        after_step_id: Option<Uuid>,
    },
    Publish,
    Unpublish,
    Archive,
    Assign {
        server_id: Uuid,
        assignment: Assignment,
    },
    ChangeAssignment {
        server_id: Uuid,
        display_order: Option<i32>,
        enabled: Option<bool>,
    },
    Unassign {
        server_id: Uuid,
    },
}

#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, strum::IntoStaticStr, strum::VariantNames,
)]
pub enum WalkthroughEvent {
    WalkthroughCreated {
        org_id: Uuid,
        title: String,
        #[serde(default)]
        description: Option<String>,
    },
    WalkthroughDetailsChanged {
        title: String,
        #[serde(default)]
        description: Option<String>,
    },
    StepAdded {
        step_id: Uuid,
        /// `None`: the new first step.
        after_step_id: Option<Uuid>,
        step: StepContent,
    },
    StepEdited {
        step_id: Uuid,
        step: StepContent,
    },
    StepRemoved {
        step_id: Uuid,
    },
    StepMoved {
        step_id: Uuid,
        after_step_id: Option<Uuid>,
    },
    /// A new immutable version: the whole content, so readers need nothing else.
    WalkthroughPublished {
        version: u32,
        title: String,
        #[serde(default)]
        description: Option<String>,
        steps: Vec<Step>,
    },
    WalkthroughUnpublished {
        version: u32,
    },
    /// An unpublished walkthrough shown again unchanged: the same version, not a copy of it,
    /// so its runs and analytics stay under one version.
    WalkthroughRepublished {
        version: u32,
    },
    WalkthroughArchived,
    WalkthroughAssigned {
        server_id: Uuid,
        display_order: i32,
        enabled: bool,
    },
    WalkthroughAssignmentChanged {
        server_id: Uuid,
        display_order: i32,
        enabled: bool,
    },
    WalkthroughUnassigned {
        server_id: Uuid,
    },
}

impl DomainEvent for WalkthroughEvent {
    fn event_type(&self) -> &'static str {
        self.into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalkthroughError {
    #[error("walkthrough not found")]
    NotFound,
    #[error("walkthrough already exists")]
    AlreadyExists,
    #[error("only owners and admins can change walkthroughs")]
    NotAllowed,
    #[error("the walkthrough is archived and can no longer change")]
    Archived,
    #[error("no such step in this walkthrough")]
    StepNotFound,
    #[error("after_step_id names no step of this walkthrough")]
    AnchorNotFound,
    #[error("a step cannot be moved after itself")]
    MoveAfterItself,
    #[error("a walkthrough needs at least one step to be published")]
    NoSteps,
    #[error("nothing changed since version {0} was published")]
    NothingToPublish(u32),
    #[error("the walkthrough is not published")]
    NotPublished,
    #[error("only a published walkthrough can be assigned to a server")]
    AssignUnpublished,
    #[error("the walkthrough is already assigned to this server")]
    AlreadyAssigned,
    #[error("the walkthrough is not assigned to this server")]
    NotAssigned,
    #[error("{field} must be between 1 and {max} characters")]
    Length { field: &'static str, max: usize },
    #[error("at most {max} {field} are allowed")]
    TooMany { field: &'static str, max: usize },
}

fn bounded(field: &'static str, value: &str, max: usize) -> Result<String, WalkthroughError> {
    let trimmed = value.trim();
    let len = trimmed.chars().count();
    if len == 0 || len > max {
        return Err(WalkthroughError::Length { field, max });
    }
    Ok(trimmed.to_owned())
}

/// An optional text: blank means none.
fn optional(
    field: &'static str,
    value: Option<&str>,
    max: usize,
) -> Result<Option<String>, WalkthroughError> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => bounded(field, v, max).map(Some),
    }
}

/// Validates a title and an optional description.
pub fn parse_details(
    title: &str,
    description: Option<&str>,
) -> Result<(String, Option<String>), WalkthroughError> {
    Ok((
        bounded("title", title, TITLE_MAX)?,
        optional("description", description, DESCRIPTION_MAX)?,
    ))
}

impl Aggregate for Walkthrough {
    const TYPE: &'static str = "walkthrough";
    type Command = WalkthroughCommand;
    type Event = WalkthroughEvent;
    type Error = WalkthroughError;

    fn handle(
        &self,
        command: WalkthroughCommand,
    ) -> Result<Vec<WalkthroughEvent>, WalkthroughError> {
        use WalkthroughCommand as C;
        use WalkthroughEvent as E;
        if let C::Create {
            org_id,
            title,
            description,
        } = command
        {
            if self.exists() {
                return Err(WalkthroughError::AlreadyExists);
            }
            let (title, description) = parse_details(&title, description.as_deref())?;
            return Ok(vec![E::WalkthroughCreated {
                org_id,
                title,
                description,
            }]);
        }
        if !self.exists() {
            return Err(WalkthroughError::NotFound);
        }
        // Archived is read-only, but for taking it off a server: nobody sees it there any more,
        // and an admin tidying a server's list must be able to remove it.
        if self.status == WalkthroughStatus::Archived && !matches!(command, C::Unassign { .. }) {
            return Err(WalkthroughError::Archived);
        }
        match command {
            C::Create { .. } => Err(WalkthroughError::AlreadyExists),
            C::ChangeDetails { title, description } => {
                let title = title.unwrap_or_else(|| self.title.clone());
                let description = description.unwrap_or_else(|| self.description.clone());
                let (title, description) = parse_details(&title, description.as_deref())?;
                if title == self.title && description == self.description {
                    return Ok(vec![]);
                }
                Ok(vec![E::WalkthroughDetailsChanged { title, description }])
            }
            C::AddStep {
                step_id,
                after,
                step,
            } => {
                if self.steps.len() >= STEPS_MAX {
                    return Err(WalkthroughError::TooMany {
                        field: "steps",
                        max: STEPS_MAX,
                    });
                }
                let after_step_id = match after {
                    None => self.steps.last().map(|s| s.id),
                    Some(None) => None,
                    Some(Some(anchor)) => {
                        self.position(anchor)
                            .map_err(|_| WalkthroughError::AnchorNotFound)?;
                        Some(anchor)
                    }
                };
                Ok(vec![E::StepAdded {
                    step_id,
                    after_step_id,
                    step,
                }])
            }
            C::EditStep { step_id, edit } => {
                let at = self.position(step_id)?;
                let step = edit.applied_to(&self.steps[at].content)?;
                if self.steps[at].content == step {
                    return Ok(vec![]);
                }
                Ok(vec![E::StepEdited { step_id, step }])
            }
            C::RemoveStep { step_id } => {
                self.position(step_id)?;
                Ok(vec![E::StepRemoved { step_id }])
            }
            C::MoveStep {
                step_id,
                after_step_id,
            } => {
                let from = self.position(step_id)?;
                if after_step_id == Some(step_id) {
                    return Err(WalkthroughError::MoveAfterItself);
                }
                let currently_after = from.checked_sub(1).map(|i| self.steps[i].id);
                if let Some(anchor) = after_step_id {
                    self.position(anchor)
                        .map_err(|_| WalkthroughError::AnchorNotFound)?;
                }
                if currently_after == after_step_id {
                    return Ok(vec![]);
                }
                Ok(vec![E::StepMoved {
                    step_id,
                    after_step_id,
                }])
            }
            C::Publish => {
                if self.steps.is_empty() {
                    return Err(WalkthroughError::NoSteps);
                }
                let unchanged = self.version > 0
                    && self.steps == self.published
                    && self.title == self.published_title
                    && self.description == self.published_description;
                if unchanged && self.status == WalkthroughStatus::Published {
                    return Err(WalkthroughError::NothingToPublish(self.version));
                }
                if unchanged {
                    return Ok(vec![E::WalkthroughRepublished {
                        version: self.version,
                    }]);
                }
                Ok(vec![E::WalkthroughPublished {
                    version: self.version + 1,
                    title: self.title.clone(),
                    description: self.description.clone(),
                    steps: self.steps.clone(),
                }])
            }
            C::Unpublish => {
                if self.status != WalkthroughStatus::Published {
                    return Err(WalkthroughError::NotPublished);
                }
                Ok(vec![E::WalkthroughUnpublished {
                    version: self.version,
                }])
            }
            C::Archive => Ok(vec![E::WalkthroughArchived]),
            C::Assign {
                server_id,
                assignment,
            } => {
                if self.status != WalkthroughStatus::Published {
                    return Err(WalkthroughError::AssignUnpublished);
                }
                if self.assignments.contains_key(&server_id) {
                    return Err(WalkthroughError::AlreadyAssigned);
                }
                Ok(vec![E::WalkthroughAssigned {
                    server_id,
                    display_order: assignment.display_order,
                    enabled: assignment.enabled,
                }])
            }
            C::ChangeAssignment {
                server_id,
                display_order,
                enabled,
            } => {
                let current = self
                    .assignments
                    .get(&server_id)
                    .ok_or(WalkthroughError::NotAssigned)?;
                let next = Assignment {
                    display_order: display_order.unwrap_or(current.display_order),
                    enabled: enabled.unwrap_or(current.enabled),
                };
                if next == *current {
                    return Ok(vec![]);
                }
                Ok(vec![E::WalkthroughAssignmentChanged {
                    server_id,
                    display_order: next.display_order,
                    enabled: next.enabled,
                }])
            }
            C::Unassign { server_id } => {
                if !self.assignments.contains_key(&server_id) {
                    return Err(WalkthroughError::NotAssigned);
                }
                Ok(vec![E::WalkthroughUnassigned { server_id }])
            }
        }
    }

    fn apply(&mut self, event: &WalkthroughEvent) {
        use WalkthroughEvent as E;
        match event {
            E::WalkthroughCreated {
                org_id,
                title,
                description,
            } => {
                self.org_id = Some(*org_id);
                self.title = title.clone();
                self.description = description.clone();
            }
            E::WalkthroughDetailsChanged { title, description } => {
                self.title = title.clone();
                self.description = description.clone();
            }
            E::StepAdded { .. }
            | E::StepEdited { .. }
            | E::StepRemoved { .. }
            | E::StepMoved { .. } => edit_draft(&mut self.steps, event),
            E::WalkthroughPublished {
                version,
                title,
                description,
                steps,
            } => {
                self.version = *version;
                self.status = WalkthroughStatus::Published;
                self.published = steps.clone();
                self.published_title = title.clone();
                self.published_description = description.clone();
            }
            E::WalkthroughUnpublished { .. } => self.status = WalkthroughStatus::Unpublished,
            E::WalkthroughRepublished { .. } => self.status = WalkthroughStatus::Published,
            E::WalkthroughArchived => self.status = WalkthroughStatus::Archived,
            E::WalkthroughAssigned {
                server_id,
                display_order,
                enabled,
            }
            | E::WalkthroughAssignmentChanged {
                server_id,
                display_order,
                enabled,
            } => {
                self.assignments.insert(
                    *server_id,
                    Assignment {
                        display_order: *display_order,
                        enabled: *enabled,
                    },
                );
            }
            E::WalkthroughUnassigned { server_id } => {
                self.assignments.remove(server_id);
            }
        }
    }
}

/// Applies a draft-step event to an ordered list of steps (other events change nothing): the
/// aggregate's draft and the read model's copy of it evolve by this one function.
pub fn edit_draft(steps: &mut Vec<Step>, event: &WalkthroughEvent) {
    match event {
        WalkthroughEvent::StepAdded {
            step_id,
            after_step_id,
            step,
        } => insert_after(
            steps,
            *after_step_id,
            Step {
                id: *step_id,
                content: step.clone(),
            },
        ),
        WalkthroughEvent::StepEdited { step_id, step } => {
            if let Some(s) = steps.iter_mut().find(|s| s.id == *step_id) {
                s.content = step.clone();
            }
        }
        WalkthroughEvent::StepRemoved { step_id } => steps.retain(|s| s.id != *step_id),
        WalkthroughEvent::StepMoved {
            step_id,
            after_step_id,
        } => {
            if let Some(from) = steps.iter().position(|s| s.id == *step_id) {
                let step = steps.remove(from);
                insert_after(steps, *after_step_id, step);
            }
        }
        _ => {}
    }
}

/// Inserts `step` after the step `after` (first when `None`, last when `after` is gone).
fn insert_after(steps: &mut Vec<Step>, after: Option<Uuid>, step: Step) {
    let at = match after {
        None => 0,
        Some(anchor) => steps
            .iter()
            .position(|s| s.id == anchor)
            .map(|i| i + 1)
            .unwrap_or(steps.len()),
    };
    steps.insert(at, step);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::{given_when, replay};

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn content(title: &str) -> StepContent {
        StepContent::parse(title, "Do the thing.", Some("Say hello."), &[]).unwrap()
    }

    fn created() -> WalkthroughEvent {
        WalkthroughEvent::WalkthroughCreated {
            org_id: id(1),
            title: "Quickstart".into(),
            description: None,
        }
    }

    fn added(step: u128, after: Option<u128>) -> WalkthroughEvent {
        WalkthroughEvent::StepAdded {
            step_id: id(step),
            after_step_id: after.map(id),
            step: content(&format!("step {step}")),
        }
    }

    fn order(events: &[WalkthroughEvent]) -> Vec<Uuid> {
        replay::<Walkthrough>(events)
            .steps
            .iter()
            .map(|s| s.id)
            .collect()
    }

    #[test]
    fn a_new_step_goes_last_unless_placed() {
        let given = [created(), added(10, None), added(11, Some(10))];
        let events = given_when::<Walkthrough>(
            &given,
            WalkthroughCommand::AddStep {
                step_id: id(12),
                after: None,
                step: content("c"),
            },
        )
        .unwrap();
        assert_eq!(
            events,
            vec![WalkthroughEvent::StepAdded {
                step_id: id(12),
                after_step_id: Some(id(11)),
                step: content("c"),
            }]
        );
        let first = given_when::<Walkthrough>(
            &given,
            WalkthroughCommand::AddStep {
                step_id: id(13),
                after: Some(None),
                step: content("d"),
            },
        )
        .unwrap();
        let mut all = given.to_vec();
        all.extend(first);
        assert_eq!(order(&all), vec![id(13), id(10), id(11)]);
    }

    #[test]
    fn moves_keep_ids_and_refuse_nonsense() {
        let given = [
            created(),
            added(10, None),
            added(11, Some(10)),
            added(12, Some(11)),
        ];
        let moved = given_when::<Walkthrough>(
            &given,
            WalkthroughCommand::MoveStep {
                step_id: id(12),
                after_step_id: None,
            },
        )
        .unwrap();
        let mut all = given.to_vec();
        all.extend(moved);
        assert_eq!(order(&all), vec![id(12), id(10), id(11)]);
        assert_eq!(
            given_when::<Walkthrough>(
                &given,
                WalkthroughCommand::MoveStep {
                    step_id: id(11),
                    after_step_id: Some(id(11)),
                }
            ),
            Err(WalkthroughError::MoveAfterItself)
        );
        assert_eq!(
            given_when::<Walkthrough>(
                &given,
                WalkthroughCommand::MoveStep {
                    step_id: id(99),
                    after_step_id: None,
                }
            ),
            Err(WalkthroughError::StepNotFound)
        );
        assert_eq!(
            given_when::<Walkthrough>(
                &given,
                WalkthroughCommand::MoveStep {
                    step_id: id(10),
                    after_step_id: Some(id(99)),
                }
            ),
            Err(WalkthroughError::AnchorNotFound)
        );
        // Already there: nothing to record.
        assert_eq!(
            given_when::<Walkthrough>(
                &given,
                WalkthroughCommand::MoveStep {
                    step_id: id(11),
                    after_step_id: Some(id(10)),
                }
            ),
            Ok(vec![])
        );
    }

    #[test]
    fn publishing_freezes_a_version_and_drafting_goes_on() {
        assert_eq!(
            given_when::<Walkthrough>(&[created()], WalkthroughCommand::Publish),
            Err(WalkthroughError::NoSteps)
        );
        let mut history = vec![created(), added(10, None)];
        let v1 = given_when::<Walkthrough>(&history, WalkthroughCommand::Publish).unwrap();
        assert!(matches!(
            &v1[0],
            WalkthroughEvent::WalkthroughPublished { version: 1, steps, .. } if steps.len() == 1
        ));
        history.extend(v1);
        assert_eq!(
            given_when::<Walkthrough>(&history, WalkthroughCommand::Publish),
            Err(WalkthroughError::NothingToPublish(1))
        );
        history.push(added(11, Some(10)));
        let state = replay::<Walkthrough>(&history);
        assert_eq!(
            state.published.len(),
            1,
            "the draft does not touch version 1"
        );
        assert_eq!(state.steps.len(), 2);
        let v2 = given_when::<Walkthrough>(&history, WalkthroughCommand::Publish).unwrap();
        assert!(matches!(
            &v2[0],
            WalkthroughEvent::WalkthroughPublished { version: 2, .. }
        ));
    }

    #[test]
    fn publishing_again_after_unpublishing_without_edits_shows_the_same_version() {
        let mut history = vec![created(), added(10, None)];
        history.extend(given_when::<Walkthrough>(&history, WalkthroughCommand::Publish).unwrap());
        history.extend(given_when::<Walkthrough>(&history, WalkthroughCommand::Unpublish).unwrap());
        let again = given_when::<Walkthrough>(&history, WalkthroughCommand::Publish).unwrap();
        assert_eq!(
            again,
            vec![WalkthroughEvent::WalkthroughRepublished { version: 1 }]
        );
        history.extend(again);
        let state = replay::<Walkthrough>(&history);
        assert_eq!(
            (state.status, state.version),
            (WalkthroughStatus::Published, 1)
        );
        assert_eq!(
            given_when::<Walkthrough>(&history, WalkthroughCommand::Publish),
            Err(WalkthroughError::NothingToPublish(1))
        );
        // With an edit made while unpublished, publishing makes a new version.
        history.extend(given_when::<Walkthrough>(&history, WalkthroughCommand::Unpublish).unwrap());
        history.push(added(11, Some(10)));
        assert!(matches!(
            &given_when::<Walkthrough>(&history, WalkthroughCommand::Publish).unwrap()[0],
            WalkthroughEvent::WalkthroughPublished { version: 2, steps, .. } if steps.len() == 2
        ));
    }

    #[test]
    fn only_published_walkthroughs_are_assigned_and_archived_ones_never_change() {
        let draft = [created(), added(10, None)];
        let assign = WalkthroughCommand::Assign {
            server_id: id(5),
            assignment: Assignment {
                display_order: 1,
                enabled: true,
            },
        };
        assert_eq!(
            given_when::<Walkthrough>(&draft, assign.clone()),
            Err(WalkthroughError::AssignUnpublished)
        );
        let mut history = draft.to_vec();
        history.extend(given_when::<Walkthrough>(&history, WalkthroughCommand::Publish).unwrap());
        history.extend(given_when::<Walkthrough>(&history, assign.clone()).unwrap());
        assert_eq!(
            given_when::<Walkthrough>(&history, assign),
            Err(WalkthroughError::AlreadyAssigned)
        );
        history.push(WalkthroughEvent::WalkthroughArchived);
        assert_eq!(
            given_when::<Walkthrough>(&history, WalkthroughCommand::Publish),
            Err(WalkthroughError::Archived)
        );
        // …but an archived walkthrough can still be taken off a server.
        assert_eq!(
            given_when::<Walkthrough>(&history, WalkthroughCommand::Unassign { server_id: id(5) }),
            Ok(vec![WalkthroughEvent::WalkthroughUnassigned {
                server_id: id(5)
            }])
        );
    }

    #[test]
    fn a_partial_edit_keeps_the_other_fields() {
        let given = [created(), added(10, None)];
        let events = given_when::<Walkthrough>(
            &given,
            WalkthroughCommand::EditStep {
                step_id: id(10),
                edit: StepEdit {
                    content: Some("New text.".into()),
                    agent_instructions: Some(None),
                    ..StepEdit::default()
                },
            },
        )
        .unwrap();
        let WalkthroughEvent::StepEdited { step, .. } = &events[0] else {
            panic!("{events:?}");
        };
        assert_eq!(step.title, "step 10");
        assert_eq!(step.content, "New text.");
        assert_eq!(step.agent_instructions, None);
        assert_eq!(
            given_when::<Walkthrough>(
                &given,
                WalkthroughCommand::EditStep {
                    step_id: id(10),
                    edit: StepEdit {
                        title: Some(" ".into()),
                        ..StepEdit::default()
                    },
                },
            ),
            Err(WalkthroughError::Length {
                field: "title",
                max: TITLE_MAX
            })
        );
    }

    #[test]
    fn bounds_are_checked() {
        assert!(matches!(
            StepContent::parse(" ", "x", None, &[]),
            Err(WalkthroughError::Length { field: "title", .. })
        ));
        assert!(matches!(
            StepContent::parse("t", "x", None, &vec!["op".to_owned(); OPERATIONS_MAX + 1]),
            Err(WalkthroughError::TooMany {
                field: "operations",
                ..
            })
        ));
        assert_eq!(
            StepContent::parse("t", "x", Some("   "), &[])
                .unwrap()
                .agent_instructions,
            None
        );
    }
}
