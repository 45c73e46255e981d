//! `list_walkthroughs`, `select_walkthrough`, `next_walkthrough_step`: interactive walkthroughs
//! delivered by the agent, one step at a time. Listed only on servers with `walkthrough_tools`
//! on and at least one enabled, published walkthrough assigned.
//!
//! Every step is rendered by [`render_step`], one template that keeps what the agent should do
//! (instructions, operations) apart from what the user should read.

use super::{internal_error, invalid, json_type, schema, tool_error, CallContext};
use commands::errors::{ErrorCode, Failure};
use commands::services::walkthrough_progress::{self as progress, Outcome, Source, Target};
use domain::values::OrgId;
use domain::walkthrough::Step;
use domain::walkthrough_progress::{
    ProgressError, ProgressEvent, StartingVersion, WalkthroughProgress,
};
use eventstore::ExecuteError;
use moka::future::Cache;
use projections::models::walkthroughs as rm;
use rmcp::model::{CallToolResult, ContentBlock, JsonObject, Tool, ToolAnnotations};
use rmcp::ErrorData;
use serde_json::{json, Value};
use sqlx::PgPool;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

pub const LIST: &str = "list_walkthroughs";
pub const SELECT: &str = "select_walkthrough";
pub const NEXT: &str = "next_walkthrough_step";
pub const TOOLS: [&str; 3] = [LIST, SELECT, NEXT];

/// How long a server's offer is reused: assignment changes reach end users within this.
const OFFER_TTL: Duration = Duration::from_secs(1);
/// Bound on cached offers (one per server).
const MAX_CACHED_OFFERS: u64 = 10_000;
/// Bound on cached versions.
const MAX_CACHED_VERSIONS: u64 = 10_000;

/// A published version as end users get it.
#[derive(Debug)]
pub struct Version {
    pub walkthrough_id: Uuid,
    pub title: String,
    pub description: Option<String>,
    pub version: u32,
    pub steps: Vec<Step>,
}

impl Version {
    fn starting(&self) -> StartingVersion {
        StartingVersion {
            version: self.version,
            steps: self.steps.iter().map(|s| s.id).collect(),
        }
    }
}

/// A server's walkthroughs, in display order, each at its newest version.
pub type Offer = Arc<Vec<Arc<Version>>>;

/// What each server offers (briefly cached) and every published version (immutable, so cached
/// until evicted). Concurrent misses for one key share one read.
pub struct Catalog {
    offers: Cache<Uuid, Offer>,
    /// Keyed by org too: a cached version is only ever handed to its own org, whatever id a
    /// caller brings.
    versions: Cache<(Uuid, Uuid, u32), Arc<Version>>,
}

impl Default for Catalog {
    fn default() -> Self {
        Self {
            offers: Cache::builder()
                .max_capacity(MAX_CACHED_OFFERS)
                .time_to_live(OFFER_TTL)
                .build(),
            versions: Cache::new(MAX_CACHED_VERSIONS),
        }
    }
}

/// Why a version was not cached: there is none (not cached, as it may be published later), or
/// the read failed.
#[derive(Debug, thiserror::Error)]
pub enum VersionMiss {
    #[error("no such version")]
    None,
    #[error(transparent)]
    Read(#[from] sqlx::Error),
}

/// A version read that failed, for the caller (a missing version is not a failure: `None`).
fn version_failure(miss: Arc<VersionMiss>) -> Failure {
    match &*miss {
        VersionMiss::Read(e) if eventstore::is_unavailable(e) => Failure::unavailable(miss),
        _ => Failure::internal(miss),
    }
}

fn to_u32(v: i32) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

impl Catalog {
    /// The server's walkthroughs, in display order, each at its newest version.
    pub async fn offered(
        &self,
        pool: &PgPool,
        org_id: Uuid,
        server_id: Uuid,
    ) -> Result<Offer, Arc<sqlx::Error>> {
        self.offers
            .try_get_with(server_id, async {
                let rows = rm::offered(pool, OrgId(org_id), server_id).await?;
                let mut offer = Vec::with_capacity(rows.len());
                for r in rows {
                    let version = Arc::new(Version {
                        walkthrough_id: r.walkthrough_id,
                        title: r.title,
                        description: r.description,
                        version: to_u32(r.version),
                        steps: r.steps.0,
                    });
                    self.remember(org_id, version.clone()).await;
                    offer.push(version);
                }
                Ok(Arc::new(offer))
            })
            .await
    }

    async fn remember(&self, org_id: Uuid, version: Arc<Version>) {
        self.versions
            .insert((org_id, version.walkthrough_id, version.version), version)
            .await;
    }

    /// One published version (what a run in progress keeps using).
    pub async fn version(
        &self,
        pool: &PgPool,
        org_id: Uuid,
        walkthrough_id: Uuid,
        version: u32,
    ) -> Result<Option<Arc<Version>>, Arc<VersionMiss>> {
        let loaded = self
            .versions
            .try_get_with((org_id, walkthrough_id, version), async {
                let number = i32::try_from(version).unwrap_or(i32::MAX);
                let row = rm::version(pool, OrgId(org_id), walkthrough_id, number)
                    .await?
                    .ok_or(VersionMiss::None)?;
                Ok::<_, VersionMiss>(Arc::new(Version {
                    walkthrough_id,
                    title: row.title,
                    description: row.description,
                    version,
                    steps: row.steps.0,
                }))
            })
            .await;
        match loaded {
            Ok(v) => Ok(Some(v)),
            Err(miss) if matches!(*miss, VersionMiss::None) => Ok(None),
            Err(miss) => Err(miss),
        }
    }
}

fn annotated(mut tool: Tool, title: &str, read_only: bool) -> Tool {
    tool.title = Some(title.to_owned());
    tool.annotations = Some(
        ToolAnnotations::new()
            .read_only(read_only)
            .destructive(false)
            .idempotent(read_only)
            .open_world(false),
    );
    tool
}

pub fn tools() -> Vec<Tool> {
    vec![
        annotated(
            Tool::new(
                LIST,
                "List the interactive walkthroughs (guided tutorials) this product offers, with \
                 how far the user has got in each. Call it when the user wants to learn the \
                 product or asks for a tutorial.",
                schema(
                    json!({ "type": "object", "properties": {}, "additionalProperties": false }),
                ),
            ),
            "List walkthroughs",
            true,
        ),
        annotated(
            Tool::new(
                SELECT,
                "Start a walkthrough, or resume it where the user left off, and get its current \
                 step. Set resume_if_exists to false to start over from the first step.",
                schema(json!({
                    "type": "object",
                    "properties": {
                        "walkthrough_id": { "type": "string", "description": "An id from list_walkthroughs" },
                        "resume_if_exists": { "type": "boolean", "default": true, "description": "Resume the user's progress (default) or start over" }
                    },
                    "required": ["walkthrough_id"],
                    "additionalProperties": false
                })),
            ),
            "Select a walkthrough",
            false,
        ),
        annotated(
            Tool::new(
                NEXT,
                "Mark the current walkthrough step as done and get the next one. Call it only \
                 when the user has finished the step; pass the step's id as current_step_id.",
                schema(json!({
                    "type": "object",
                    "properties": {
                        "current_step_id": { "type": "string", "description": "The id of the step the user just finished" }
                    },
                    "additionalProperties": false
                })),
            ),
            "Next walkthrough step",
            false,
        ),
    ]
}

fn unavailable(failure: impl Into<Failure>) -> ErrorData {
    internal_error(
        failure,
        "walkthrough tool failed",
        "walkthroughs are unavailable right now; nothing was changed, please retry",
    )
}

/// Rejects arguments the tool does not take, naming the ones it does.
fn only(arguments: &JsonObject, allowed: &[&str]) -> Result<(), CallToolResult> {
    match arguments.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(unknown) if allowed.is_empty() => Err(tool_error(invalid(format!(
            "unknown argument `{unknown}`; this tool takes none"
        )))),
        Some(unknown) => Err(tool_error(invalid(format!(
            "unknown argument `{unknown}`; expected {}",
            allowed.join(", ")
        )))),
        None => Ok(()),
    }
}

fn needs_identity() -> CallToolResult {
    tool_error(Failure::new(
        ErrorCode::IdentityRequired,
        "Walkthrough progress is kept per user, and this connection does not say who the user \
         is. Connect with the personal server URL that ends in /t/{tracking-id}/mcp (or sign in), \
         then try again.",
    ))
}

pub async fn call(
    cx: &CallContext<'_>,
    name: &str,
    arguments: &JsonObject,
) -> Result<CallToolResult, ErrorData> {
    match name {
        LIST => list(cx, arguments).await,
        SELECT => select(cx, arguments).await,
        _ => next(cx, arguments).await,
    }
}

async fn offered(cx: &CallContext<'_>) -> Result<Offer, ErrorData> {
    cx.core
        .walkthroughs
        .offered(cx.store.pool(), cx.tenant.org_id, cx.tenant.server_id)
        .await
        .map_err(unavailable)
}

/// "1 step", "10 steps": the count as the listing reads it.
fn step_count_text(count: usize) -> String {
    if count == 1 {
        "1 step".to_owned()
    } else {
        format!("{count} steps")
    }
}

fn progress_json(progress: &WalkthroughProgress) -> Value {
    match &progress.run {
        None => json!({ "status": "not_started" }),
        Some(run) => json!({
            "status": if run.is_completed() { "completed" } else { "in_progress" },
            "version": run.version,
            "steps_completed": run.current,
            "step_count": run.steps.len(),
            "current_step_id": run.current_step(),
        }),
    }
}

async fn list(cx: &CallContext<'_>, arguments: &JsonObject) -> Result<CallToolResult, ErrorData> {
    if let Err(e) = only(arguments, &[]) {
        return Ok(e);
    }
    let offer = offered(cx).await?;
    let mut text = String::new();
    let mut items = Vec::new();
    for (i, w) in offer.iter().enumerate() {
        let state = match cx.caller.end_user_id {
            Some(end_user) => Some(
                progress::load(cx.store, w.walkthrough_id, end_user)
                    .await
                    .map_err(unavailable)?,
            ),
            None => None,
        };
        let status = match state.as_ref().and_then(|p| p.run.as_ref()) {
            None => "not started".to_owned(),
            Some(run) if run.is_completed() => "completed".to_owned(),
            Some(run) => format!(
                "in progress, step {} of {}",
                run.current + 1,
                run.steps.len()
            ),
        };
        let _ = writeln!(
            text,
            "{}. {} (id: {}) — {}, {status}{}",
            i + 1,
            w.title,
            w.walkthrough_id,
            step_count_text(w.steps.len()),
            w.description
                .as_deref()
                .map(|d| format!("\n   {d}"))
                .unwrap_or_default(),
        );
        items.push(json!({
            "id": w.walkthrough_id,
            "title": w.title,
            "description": w.description,
            "version": w.version,
            "step_count": w.steps.len(),
            "progress": state.as_ref().map_or(json!({ "status": "unknown" }), progress_json),
        }));
    }
    if items.is_empty() {
        text.push_str("This server offers no walkthroughs right now.");
    } else {
        text.push_str("\nTo start or resume one, call select_walkthrough with its id.");
    }
    let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
    result.structured_content = Some(json!({ "walkthroughs": items }));
    Ok(result)
}

fn find<'a>(offer: &'a [Arc<Version>], raw: &str) -> Option<&'a Arc<Version>> {
    let id: Uuid = raw.trim().parse().ok()?;
    offer.iter().find(|w| w.walkthrough_id == id)
}

fn available(offer: &[Arc<Version>]) -> String {
    if offer.is_empty() {
        return "This server offers no walkthroughs right now.".to_owned();
    }
    let names: Vec<String> = offer
        .iter()
        .map(|w| format!("{} ({})", w.walkthrough_id, w.title))
        .collect();
    format!("Available: {}.", names.join(", "))
}

async fn select(cx: &CallContext<'_>, arguments: &JsonObject) -> Result<CallToolResult, ErrorData> {
    if let Err(e) = only(arguments, &["walkthrough_id", "resume_if_exists"]) {
        return Ok(e);
    }
    let raw_id = match arguments.get("walkthrough_id") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.as_str(),
        None | Some(Value::Null) | Some(Value::String(_)) => {
            return Ok(tool_error(invalid(
                "`walkthrough_id` is required; get one from list_walkthroughs",
            )))
        }
        Some(other) => {
            return Ok(tool_error(invalid(format!(
                "`walkthrough_id` must be a string, not {}",
                json_type(other)
            ))))
        }
    };
    let resume = match arguments.get("resume_if_exists") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Ok(tool_error(invalid(format!(
                "`resume_if_exists` must be a boolean, not {}",
                json_type(other)
            ))))
        }
    };
    let Some(end_user_id) = cx.caller.end_user_id else {
        return Ok(needs_identity());
    };
    let offer = offered(cx).await?;
    let Some(newest) = find(&offer, raw_id) else {
        return Ok(tool_error(Failure::new(
            ErrorCode::WalkthroughNotFound,
            format!(
                "There is no walkthrough {raw_id:?} on this server. {}",
                available(&offer)
            ),
        )));
    };
    let target = Target {
        org_id: cx.tenant.org_id,
        server_id: cx.tenant.server_id,
        end_user_id,
        walkthrough_id: newest.walkthrough_id,
    };
    let outcome = progress::select(
        cx.store,
        &cx.core.runs,
        target,
        resume,
        &newest.starting(),
        // At the precision it is stored at, so the runs kept in memory agree with the log.
        domain::time::micros(chrono::Utc::now()),
        cx.metadata,
    )
    .await;
    match outcome {
        Ok(outcome) => respond(cx, &outcome, Delivered::Selected).await,
        Err(ExecuteError::Domain(e)) => Ok(tool_error(e)),
        Err(e) => Err(unavailable(e)),
    }
}

async fn next(cx: &CallContext<'_>, arguments: &JsonObject) -> Result<CallToolResult, ErrorData> {
    if let Err(e) = only(arguments, &["current_step_id"]) {
        return Ok(e);
    }
    let expected = match arguments.get("current_step_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match s.trim().parse::<Uuid>() {
            Ok(id) => Some(id),
            Err(_) => {
                return Ok(tool_error(invalid(format!(
                    "`current_step_id` {s:?} is not a step id; pass the id of the step you were \
                     given last (or leave it out)"
                ))))
            }
        },
        Some(other) => {
            return Ok(tool_error(invalid(format!(
                "`current_step_id` must be a string, not {}",
                json_type(other)
            ))))
        }
    };
    let Some(end_user_id) = cx.caller.end_user_id else {
        return Ok(needs_identity());
    };
    // On a re-run after a conflict, complete the step this call was completing when it had
    // read the run, not whatever is current now (another client may have advanced): no step
    // is completed unseen. (A decision on a cached run that conflicted is not remembered: the
    // run moved on elsewhere, maybe long ago, so the re-run decides afresh.)
    let expected = expected.or_else(|| cx.remembered());
    let mut trust_cache = cx.remembered().is_none();
    loop {
        let current = progress::current(
            cx.store,
            &cx.core.runs,
            cx.tenant.org_id,
            end_user_id,
            trust_cache,
        )
        .await
        .map_err(unavailable)?;
        let Some((walkthrough_id, state, version, source)) = current else {
            return Ok(tool_error(Failure::new(
                ErrorCode::NoWalkthroughSelected,
                "No walkthrough is selected. Call list_walkthroughs, then select_walkthrough to \
                 start one.",
            )));
        };
        // Only a completion, which its commit checks, is decided on a cached run: any other
        // answer is decided again on a fresh read.
        let unconfirmed = source == Source::Cache;
        let offer = offered(cx).await?;
        if !offer.iter().any(|w| w.walkthrough_id == walkthrough_id) {
            if unconfirmed {
                trust_cache = false;
                continue;
            }
            return Ok(tool_error(Failure::new(
                ErrorCode::WalkthroughNotFound,
                format!(
                    "The selected walkthrough is no longer offered on this server. {}",
                    available(&offer)
                ),
            )));
        }
        let target = Target {
            org_id: cx.tenant.org_id,
            server_id: cx.tenant.server_id,
            end_user_id,
            walkthrough_id,
        };
        let staged = progress::stage_step(
            target,
            expected,
            (state, version),
            // At the precision it is stored at, so the runs kept in memory agree with the log.
            domain::time::micros(chrono::Utc::now()),
            cx.metadata,
        );
        return match staged {
            Ok((outcome, uow)) => {
                if let (Some(step), false) = (
                    outcome.events.iter().find_map(|e| match e {
                        ProgressEvent::StepCompleted { step_id, .. } => Some(*step_id),
                        _ => None,
                    }),
                    unconfirmed,
                ) {
                    cx.remember(step);
                }
                let runs = cx.core.runs.clone();
                let committed_version = version + outcome.events.len() as i64;
                let committed = outcome.progress.clone();
                cx.stage_then(
                    uow,
                    Box::new(move || {
                        runs.committed(
                            target.org_id,
                            end_user_id,
                            walkthrough_id,
                            committed_version,
                            committed,
                        )
                    }),
                );
                respond(cx, &outcome, Delivered::Advanced).await
            }
            Err(_) if unconfirmed => {
                trust_cache = false;
                continue;
            }
            Err(ExecuteError::Domain(ProgressError::StaleStep { .. })) => {
                // Answer with the real current step, unchanged: nothing is skipped.
                let state = progress::load(cx.store, walkthrough_id, end_user_id)
                    .await
                    .map_err(unavailable)?;
                let mut result = respond(
                    cx,
                    &Outcome {
                        progress: state,
                        events: vec![],
                    },
                    Delivered::Stale,
                )
                .await?;
                result.is_error = Some(true);
                Ok(result)
            }
            Err(ExecuteError::Domain(e @ ProgressError::AlreadyCompleted)) => {
                let mut failure = Failure::from(e);
                failure.detail = format!(
                    "{}. To go through it again, call select_walkthrough with resume_if_exists \
                     set to false.",
                    failure.detail
                );
                Ok(tool_error(failure))
            }
            Err(ExecuteError::Domain(e)) => Ok(tool_error(e)),
            Err(e) => Err(unavailable(e)),
        };
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Delivered {
    Selected,
    Advanced,
    Stale,
}

/// Renders where the run stands: the current step, or the completion.
async fn respond(
    cx: &CallContext<'_>,
    outcome: &Outcome,
    delivered: Delivered,
) -> Result<CallToolResult, ErrorData> {
    let Some(run) = outcome.progress.run.as_ref() else {
        return Ok(tool_error(Failure::new(
            ErrorCode::NoWalkthroughSelected,
            "No walkthrough is selected; call select_walkthrough first.",
        )));
    };
    let walkthrough_id = outcome.progress.walkthrough_id.unwrap_or_default();
    let version = cx
        .core
        .walkthroughs
        .version(
            cx.store.pool(),
            cx.tenant.org_id,
            walkthrough_id,
            run.version,
        )
        .await
        .map_err(|miss| unavailable(version_failure(miss)))?
        .ok_or_else(|| {
            unavailable(Failure::internal(
                "a published version is missing from the read model",
            ))
        })?;
    let total = run.steps.len();
    if run.is_completed() {
        let text = if delivered == Delivered::Selected && outcome.events.is_empty() {
            format!(
                "The user has already completed \"{}\". To go through it again, call \
                 select_walkthrough with resume_if_exists set to false.",
                version.title
            )
        } else {
            format!(
                "Walkthrough complete: \"{}\" ({} done). Congratulate the user and ask \
                 whether they want to explore anything else.",
                version.title,
                step_count_text(total)
            )
        };
        let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
        result.structured_content = Some(json!({
            "walkthrough_id": walkthrough_id,
            "title": version.title,
            "version": version.version,
            "status": "completed",
            "progress": { "steps_completed": total, "step_count": total },
        }));
        return Ok(result);
    }
    let Some(step_id) = run.current_step() else {
        return Err(unavailable(Failure::internal(
            "a run without a current step",
        )));
    };
    let Some(step) = version.steps.iter().find(|s| s.id == step_id) else {
        return Err(unavailable(Failure::internal(
            "the run's step is missing from its version",
        )));
    };
    let preface = match delivered {
        Delivered::Stale => format!(
            "That was not the current step, so nothing was marked done. The user is on step {} \
             of {total}:\n\n",
            run.current + 1
        ),
        Delivered::Selected if run.current > 0 && outcome.events.is_empty() => {
            format!(
                "Resuming where the user left off (step {} of {total}).\n\n",
                run.current + 1
            )
        }
        _ => String::new(),
    };
    let text = format!(
        "{preface}{}",
        render_step(&version.title, step, run.current + 1, total)
    );
    let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
    result.structured_content = Some(json!({
        "walkthrough_id": walkthrough_id,
        "title": version.title,
        "version": version.version,
        "status": "in_progress",
        "step": {
            "id": step.id,
            "number": run.current + 1,
            "title": step.content.title,
        },
        "progress": { "steps_completed": run.current, "step_count": total },
    }));
    Ok(result)
}

/// The one template every step is delivered in. Agent-only material sits in its own tagged
/// sections, apart from the user-facing content, so the agent knows what to say and what to do.
pub fn render_step(walkthrough: &str, step: &Step, number: usize, total: usize) -> String {
    let c = &step.content;
    let mut out = format!(
        "# {walkthrough} — step {number} of {total}: {}\n\n## For you, the agent (do not show this section to the user)\n\n<agent_instructions>\n{}\n</agent_instructions>\n",
        c.title,
        c.agent_instructions.as_deref().unwrap_or(
            "Present the user content below in your own words, help the user carry it out, and \
             answer their questions about it."
        ),
    );
    if !c.operations.is_empty() {
        out.push_str("\n<operations>\n");
        for (i, op) in c.operations.iter().enumerate() {
            let _ = writeln!(out, "{}. {op}", i + 1);
        }
        out.push_str("</operations>\n");
    }
    let _ = write!(
        out,
        "\n## For the user\n\n<user_content>\n{}\n</user_content>\n\n## When this step is done\n\nCall next_walkthrough_step with current_step_id \"{}\"{}.\n",
        c.content,
        step.id,
        if number == total {
            " to finish the walkthrough"
        } else {
            " to get the next step"
        },
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::walkthrough::StepContent;

    #[test]
    fn step_counts_read_as_english() {
        assert_eq!(step_count_text(0), "0 steps");
        assert_eq!(step_count_text(1), "1 step");
        assert_eq!(step_count_text(10), "10 steps");
    }

    #[test]
    fn the_template_keeps_agent_material_apart_from_user_content() {
        let step = Step {
            id: Uuid::from_u128(7),
            content: StepContent::parse(
                "Install",
                "Run `npm i acme`.",
                Some("Check their Node version first."),
                &["run: node --version".to_owned()],
            )
            .unwrap(),
        };
        let text = render_step("Quickstart", &step, 1, 3);
        let agent = text.find("<agent_instructions>").unwrap();
        let ops = text.find("<operations>").unwrap();
        let user = text.find("<user_content>").unwrap();
        assert!(agent < ops && ops < user);
        assert!(text[user..].contains("Run `npm i acme`."));
        assert!(!text[user..].contains("Check their Node version"));
        assert!(text.contains(&step.id.to_string()));
        assert!(text.starts_with("# Quickstart — step 1 of 3: Install"));
    }

    #[tokio::test]
    async fn a_cached_version_is_handed_only_to_its_own_org() {
        let (ours, theirs) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let walkthrough_id = Uuid::from_u128(3);
        let catalog = Catalog::default();
        catalog
            .remember(
                ours,
                Arc::new(Version {
                    walkthrough_id,
                    title: "Quickstart".to_owned(),
                    description: None,
                    version: 1,
                    steps: Vec::new(),
                }),
            )
            .await;
        // No database behind it: a cache hit is the only way to an answer.
        let pool = sqlx::postgres::PgPoolOptions::new()
            .acquire_timeout(Duration::from_millis(200))
            .connect_lazy("postgres://127.0.0.1:1/nothing")
            .unwrap();
        let hit = catalog.version(&pool, ours, walkthrough_id, 1).await;
        assert_eq!(hit.unwrap().unwrap().title, "Quickstart");
        let other_org = catalog.version(&pool, theirs, walkthrough_id, 1).await;
        assert!(
            !matches!(other_org, Ok(Some(_))),
            "another org's cached version was handed out"
        );
    }
}
