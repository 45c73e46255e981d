//! Conformance fixtures for multi-round requests (2026-07-28, SEP-2322): instead of sending
//! requests back to the client, a tool answers `input_required` with the input it needs, and
//! the client retries the call with `inputResponses` and the `requestState` it was given.
//!
//! `requestState` comes back from the client, so it is sealed (HMAC, keyed by the platform
//! secret) and names the tool and round it belongs to: a tampered or foreign state is refused.
//! Any instance can open a state another instance sealed.

use super::CallContext;
use rmcp::model::{
    CallToolResponse, CallToolResult, ContentBlock, GetPromptRequestParams, GetPromptResponse,
    GetPromptResult, InputRequest, InputRequests, InputRequiredResult, InputResponses,
    PromptMessage, Role, Tool,
};
use rmcp::ErrorData;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub const TOOLS: &[&str] = &[
    "test_input_required_result_elicitation",
    "test_input_required_result_sampling",
    "test_input_required_result_list_roots",
    "test_input_required_result_request_state",
    "test_input_required_result_multiple_inputs",
    "test_input_required_result_multi_round",
    "test_input_required_result_tampered_state",
    "test_input_required_result_capabilities",
];

pub const PROMPT: &str = "test_input_required_result_prompt";

pub fn tools() -> Vec<Tool> {
    TOOLS
        .iter()
        .map(|name| {
            Tool::new(
                *name,
                "Asks the client for input with an input_required result (SEP-2322)",
                super::schema(json!({ "type": "object", "properties": {} })),
            )
        })
        .collect()
}

/// What a sealed state says.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct State {
    tool: String,
    round: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

fn seal(cx: &CallContext<'_>, state: &State) -> Result<String, ErrorData> {
    cx.core
        .request_states
        .seal_json(state)
        .map_err(|e| ErrorData::internal_error(format!("sealing requestState: {e}"), None))
}

/// Opens the echoed state of `tool`; `Ok(None)` when there is none.
fn open(
    cx: &CallContext<'_>,
    tool: &str,
    sealed: Option<&str>,
) -> Result<Option<State>, ErrorData> {
    let Some(sealed) = sealed else {
        return Ok(None);
    };
    let state: State = cx.core.request_states.open_json(sealed).map_err(|_| {
        ErrorData::invalid_params("requestState is not one this server issued", None)
    })?;
    if state.tool != tool {
        return Err(ErrorData::invalid_params(
            "requestState belongs to another request",
            None,
        ));
    }
    Ok(Some(state))
}

fn request(value: Value) -> Result<InputRequest, ErrorData> {
    serde_json::from_value(value)
        .map_err(|e| ErrorData::internal_error(format!("building an input request: {e}"), None))
}

fn elicitation(
    message: &str,
    properties: Value,
    required: &[&str],
) -> Result<InputRequest, ErrorData> {
    request(json!({
        "method": "elicitation/create",
        "params": {
            "mode": "form",
            "message": message,
            "requestedSchema": { "type": "object", "properties": properties, "required": required },
        },
    }))
}

fn sampling(text: &str, max_tokens: u32) -> Result<InputRequest, ErrorData> {
    request(json!({
        "method": "sampling/createMessage",
        "params": {
            "messages": [{ "role": "user", "content": { "type": "text", "text": text } }],
            "maxTokens": max_tokens,
        },
    }))
}

fn roots_request() -> Result<InputRequest, ErrorData> {
    request(json!({ "method": "roots/list", "params": {} }))
}

fn needs(requests: Vec<(&str, InputRequest)>, state: Option<String>) -> InputRequiredResult {
    let requests: InputRequests = requests
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    InputRequiredResult::new(Some(requests), state)
}

/// The accepted form content of an elicitation response. A response that is there but is not
/// an elicitation result is the client's error.
fn accepted<'a>(
    responses: Option<&'a InputResponses>,
    key: &str,
) -> Result<Option<&'a serde_json::Map<String, Value>>, ErrorData> {
    let Some(response) = responses.and_then(|r| r.get(key)) else {
        return Ok(None);
    };
    let Some(object) = response.as_object() else {
        return Err(ErrorData::invalid_params(
            format!("inputResponses.{key} must be an elicitation result object"),
            None,
        ));
    };
    match object.get("action").and_then(Value::as_str) {
        Some("accept") => Ok(object.get("content").and_then(Value::as_object)),
        Some(_) => Ok(None),
        None => Err(ErrorData::invalid_params(
            format!("inputResponses.{key} has no action"),
            None,
        )),
    }
}

/// The text of a sampling response.
fn sampled<'a>(responses: Option<&'a InputResponses>, key: &str) -> Option<&'a str> {
    responses?.get(key)?.get("content")?.get("text")?.as_str()
}

fn listed_roots(responses: Option<&InputResponses>, key: &str) -> Option<Vec<String>> {
    let roots = responses?.get(key)?.get("roots")?.as_array()?;
    Some(
        roots
            .iter()
            .filter_map(|r| r.get("uri").and_then(Value::as_str).map(str::to_owned))
            .collect(),
    )
}

fn done(text: impl Into<String>) -> CallToolResponse {
    CallToolResult::success(vec![ContentBlock::text(text)]).into()
}

fn name_schema() -> Value {
    json!({ "name": { "type": "string", "description": "Your name" } })
}

pub async fn call(
    cx: &CallContext<'_>,
    tool: &str,
    responses: Option<&InputResponses>,
    state: Option<&str>,
) -> Result<CallToolResponse, ErrorData> {
    match tool {
        "test_input_required_result_elicitation" => {
            match accepted(responses, "user_name")?.and_then(|c| c.get("name")?.as_str()) {
                Some(name) => Ok(done(format!("Hello, {name}!"))),
                None => Ok(needs(
                    vec![(
                        "user_name",
                        elicitation("What is your name?", name_schema(), &["name"])?,
                    )],
                    None,
                )
                .into()),
            }
        }
        "test_input_required_result_sampling" => match sampled(responses, "capital_question") {
            Some(answer) => Ok(done(format!("The model said: {answer}"))),
            None => Ok(needs(
                vec![(
                    "capital_question",
                    sampling("What is the capital of France?", 100)?,
                )],
                None,
            )
            .into()),
        },
        "test_input_required_result_list_roots" => match listed_roots(responses, "client_roots") {
            Some(roots) => Ok(done(format!("Roots: {}", roots.join(", ")))),
            None => Ok(needs(vec![("client_roots", roots_request()?)], None).into()),
        },
        "test_input_required_result_request_state"
        | "test_input_required_result_tampered_state" => {
            let opened = open(cx, tool, state)?;
            let ok = accepted(responses, "confirm")?
                .and_then(|c| c.get("ok")?.as_bool())
                .unwrap_or(false);
            if opened.is_some() && ok {
                return Ok(done("state-ok: confirmed"));
            }
            let sealed = seal(
                cx,
                &State {
                    tool: tool.to_owned(),
                    round: 1,
                    name: None,
                },
            )?;
            Ok(needs(
                vec![(
                    "confirm",
                    elicitation(
                        "Please confirm",
                        json!({ "ok": { "type": "boolean", "description": "Confirm" } }),
                        &["ok"],
                    )?,
                )],
                Some(sealed),
            )
            .into())
        }
        "test_input_required_result_multiple_inputs" => {
            let opened = open(cx, tool, state)?;
            let name = accepted(responses, "user_name")?.and_then(|c| c.get("name")?.as_str());
            let greeting = sampled(responses, "greeting");
            let roots = listed_roots(responses, "client_roots");
            if let (Some(_), Some(name), Some(greeting), Some(roots)) =
                (opened, name, greeting, roots)
            {
                return Ok(done(format!("{greeting} ({name}, {} roots)", roots.len())));
            }
            let sealed = seal(
                cx,
                &State {
                    tool: tool.to_owned(),
                    round: 1,
                    name: None,
                },
            )?;
            Ok(needs(
                vec![
                    (
                        "user_name",
                        elicitation("What is your name?", name_schema(), &["name"])?,
                    ),
                    ("greeting", sampling("Generate a greeting", 50)?),
                    ("client_roots", roots_request()?),
                ],
                Some(sealed),
            )
            .into())
        }
        "test_input_required_result_multi_round" => {
            let opened = open(cx, tool, state)?;
            match opened {
                Some(State { round: 1, .. }) => {
                    let Some(name) =
                        accepted(responses, "step1")?.and_then(|c| c.get("name")?.as_str())
                    else {
                        return Err(ErrorData::invalid_params("step1 needs a name", None));
                    };
                    let sealed = seal(
                        cx,
                        &State {
                            tool: tool.to_owned(),
                            round: 2,
                            name: Some(name.to_owned()),
                        },
                    )?;
                    Ok(needs(
                        vec![(
                            "step2",
                            elicitation(
                                "Step 2: What is your favorite color?",
                                json!({ "color": { "type": "string", "description": "Color" } }),
                                &["color"],
                            )?,
                        )],
                        Some(sealed),
                    )
                    .into())
                }
                Some(State {
                    round: 2,
                    name: Some(name),
                    ..
                }) => {
                    let Some(color) =
                        accepted(responses, "step2")?.and_then(|c| c.get("color")?.as_str())
                    else {
                        return Err(ErrorData::invalid_params("step2 needs a color", None));
                    };
                    Ok(done(format!("{name} likes {color}")))
                }
                _ => {
                    let sealed = seal(
                        cx,
                        &State {
                            tool: tool.to_owned(),
                            round: 1,
                            name: None,
                        },
                    )?;
                    Ok(needs(
                        vec![(
                            "step1",
                            elicitation("Step 1: What is your name?", name_schema(), &["name"])?,
                        )],
                        Some(sealed),
                    )
                    .into())
                }
            }
        }
        "test_input_required_result_capabilities" => {
            // Ask only for what the client said it can do.
            let caps = cx.request.client_capabilities().unwrap_or_default();
            let mut requests = Vec::new();
            if caps.elicitation.is_some() {
                requests.push((
                    "user_name",
                    elicitation("What is your name?", name_schema(), &["name"])?,
                ));
            }
            if caps.sampling.is_some() {
                requests.push(("greeting", sampling("Generate a greeting", 50)?));
            }
            if caps.roots.is_some() {
                requests.push(("client_roots", roots_request()?));
            }
            let answered = responses.is_some_and(|r| !r.is_empty());
            if requests.is_empty() || answered {
                return Ok(done("nothing more to ask"));
            }
            Ok(needs(requests, None).into())
        }
        other => Err(ErrorData::invalid_params(
            format!("unknown tool: {other}"),
            None,
        )),
    }
}

/// `prompts/get` of the multi-round prompt.
pub fn get_prompt(request: &GetPromptRequestParams) -> Result<GetPromptResponse, ErrorData> {
    match accepted(request.input_responses.as_ref(), "user_context")?
        .and_then(|c| c.get("context")?.as_str())
    {
        Some(context) => Ok(GetPromptResult::new(vec![PromptMessage::new_text(
            Role::User,
            format!("Use this context: {context}"),
        )])
        .into()),
        None => Ok(needs(
            vec![(
                "user_context",
                elicitation(
                    "What context should the prompt use?",
                    json!({ "context": { "type": "string", "description": "Context" } }),
                    &["context"],
                )?,
            )],
            None,
        )
        .into()),
    }
}
