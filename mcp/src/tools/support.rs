//! `get_support`: an end user asks the customer's team for help; a ticket is opened.

use super::{
    internal_error, invalid, optional_string, required_string, schema, tool_error, CallContext,
};
use commands::errors::{ErrorCode, Failure};
use commands::limits::TicketKey;
use commands::services::{end_users, tickets};
use domain::limit::Refusal;
use domain::values::{Email, OrgId};
use rmcp::model::{CallToolResult, ContentBlock, JsonObject, Tool, ToolAnnotations};
use rmcp::ErrorData;
use serde_json::json;
use uuid::Uuid;

pub const NAME: &str = "get_support";

pub fn tool() -> Tool {
    let mut tool = Tool::new(
        NAME,
        "Ask this product's support team for help. Opens a support ticket and returns its \
         reference. Use it when the user is stuck, hits an error you cannot resolve, or asks to \
         talk to a human.",
        schema(json!({
            "type": "object",
            "properties": {
                "title": { "type": "string", "description": "One line: what the problem is", "maxLength": 200 },
                "description": { "type": "string", "description": "What happened, what was expected, steps taken" },
                "email": { "type": "string", "format": "email", "description": "Where the support team can reply (optional)" },
                "context": { "type": "string", "description": "Anything else useful: versions, error output, code (optional)" }
            },
            "required": ["title", "description"],
            "additionalProperties": false
        })),
    );
    tool.title = Some("Get support".to_owned());
    tool.annotations = Some(
        ToolAnnotations::new()
            .read_only(false)
            .destructive(false)
            .idempotent(false)
            .open_world(false),
    );
    tool
}

pub async fn call(
    cx: &CallContext<'_>,
    arguments: &JsonObject,
) -> Result<CallToolResult, ErrorData> {
    let parsed = (|| {
        let title = required_string(arguments, "title")?;
        let description = required_string(arguments, "description")?;
        let email = optional_string(arguments, "email")?
            .map(|e| Email::parse(e).map_err(|err| tool_error(invalid(format!("`email`: {err}")))))
            .transpose()?;
        let context = optional_string(arguments, "context")?;
        if let Some(unknown) = arguments
            .keys()
            .find(|k| !matches!(k.as_str(), "title" | "description" | "email" | "context"))
        {
            return Err(tool_error(invalid(format!(
                "unknown argument `{unknown}`; expected title, description, email, context"
            ))));
        }
        Ok((title, description, email, context))
    })();
    let (title, description, email, context) = match parsed {
        Ok(p) => p,
        Err(result) => return Ok(result),
    };
    if let Some(limited) = over_ticket_limit(cx).await {
        return Ok(limited);
    }
    let ticket_id = Uuid::new_v4();
    let opened = tickets::open(
        cx.store,
        ticket_id,
        tickets::NewTicket {
            org_id: cx.tenant.org_id,
            server_id: cx.tenant.server_id,
            end_user_id: cx.caller.end_user_id,
            title: title.to_owned(),
            description: description.to_owned(),
            email: email.as_ref().map(|e| e.as_str().to_owned()),
            context: context.map(str::to_owned),
        },
        cx.metadata,
    )
    .await;
    let created_at = match opened {
        Ok(done) => done.recorded_at(),
        Err(eventstore::ExecuteError::Domain(e)) => return Ok(tool_error(e)),
        Err(e) => {
            return Err(internal_error(
                e,
                "opening a ticket failed",
                "the ticket could not be stored; nothing was opened, please retry",
            ));
        }
    };
    if let (Some(email), Some(end_user_id)) = (&email, cx.caller.end_user_id) {
        if let Err(e) = end_users::record_email(
            cx.store,
            cx.tenant.org_id,
            end_user_id,
            email.clone(),
            cx.metadata,
        )
        .await
        {
            // The ticket carries the email too, so the team can still reply.
            tracing::warn!(error = %e, "recording the end user's email failed");
        }
        // Identity stitching: the email of a signed-in end user's verified address makes this
        // (anonymous) end user part of that person.
        match end_users::stitch_ticket_email(
            cx.store,
            cx.metadata,
            OrgId(cx.tenant.org_id),
            end_user_id,
            email,
        )
        .await
        {
            Ok(Some(_)) => {
                if let Some(tracking_id) = &cx.caller.tracking_id {
                    cx.core
                        .identities
                        .forget(cx.tenant.org_id, tracking_id)
                        .await;
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "merging the ticket's end user failed"),
        }
    }
    let reference = domain::ticket::reference(ticket_id);
    let reply_to = email
        .as_ref()
        .map(|e| format!(" They will reply to {}.", e.as_str()))
        .unwrap_or_default();
    let mut result = CallToolResult::success(vec![ContentBlock::text(format!(
        "Opened support ticket {reference} with the {} team.{reply_to}",
        cx.tenant.name
    ))]);
    result.structured_content = Some(json!({
        "ticket_id": ticket_id,
        "reference": reference,
        "status": "new",
        "created_at": created_at.as_ref().map(domain::time::format),
    }));
    Ok(result)
}

/// The platform limit on tickets per end user (per client address for an anonymous caller):
/// past it, an `isError` result that says when to retry (`retryAfter`, seconds, in its
/// structured content) and opens nothing. The refusal is recorded (`LimitRefused`).
async fn over_ticket_limit(cx: &CallContext<'_>) -> Option<CallToolResult> {
    let address = cx.metadata.client_ip.clone().unwrap_or_default();
    let key = match cx.caller.end_user_id {
        Some(id) => TicketKey::EndUser(id),
        None => TicketKey::Address(address.clone()),
    };
    let guard = &cx.core.config.guard;
    let refused = guard.ticket(&key).err()?;
    let retry = refused.retry_after_secs;
    let refusal = Refusal {
        limit: refused.limit,
        allowed: refused.allowed,
        org_id: Some(cx.tenant.org_id),
        server_id: Some(cx.tenant.server_id),
        end_user_id: cx.caller.end_user_id,
        user_id: None,
        retry_after_secs: Some(retry),
    };
    let record_key = match cx.caller.end_user_id {
        Some(id) => id.to_string(),
        None => format!("{}/{address}", cx.tenant.server_id),
    };
    guard
        .record(&cx.core.store, refusal, &record_key, cx.metadata)
        .await;
    let failure = Failure::new(
        ErrorCode::LimitReached,
        format!(
            "too many support tickets from this user (at most {} a day); nothing was opened, \
             retry in {retry} s",
            refused.allowed
        ),
    );
    let mut result = tool_error(failure);
    result.structured_content = Some(json!({
        "code": ErrorCode::LimitReached.as_str(),
        "limit": refused.limit,
        "retryAfter": retry,
    }));
    Some(result)
}
