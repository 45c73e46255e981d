//! The conformance toolset: the fixtures the official MCP conformance suite
//! (`@modelcontextprotocol/conformance`) calls, served by a real tenant whose admin switched on
//! `conformance_fixtures`. Names, texts and data are the ones the suite compares against.
//!
//! Logging and sampling are deprecated by the 2026-07-28 revision (SEP-2577) but are still
//! part of the 2025-11-25 one the suite checks, hence the module-wide allowance.
#![allow(deprecated)]

use super::{schema, CallContext};
use rmcp::model::{
    CallToolResult, CompleteRequestParams, CompleteResult, CompletionInfo, ContentBlock,
    CreateMessageRequestParams, ElicitRequestParams, GetPromptRequestParams, GetPromptResult,
    ImageContent, JsonObject, ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult,
    LoggingLevel, LoggingMessageNotificationParam, ProgressNotificationParam, Prompt,
    PromptArgument, PromptMessage, ReadResourceRequestParams, ReadResourceResult, Resource,
    ResourceContents, ResourceTemplate, Role as PromptMessageRole, ServerCapabilities, Tool,
};
use rmcp::ErrorData;
use serde_json::json;

/// A 1×1 red PNG.
pub const PNG_BASE64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
/// A minimal WAV header (silence).
pub const WAV_BASE64: &str = "UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQAAAAA=";

pub const STATIC_TEXT_URI: &str = "test://static-text";
pub const STATIC_TEXT: &str = "This is the content of the static text resource.";
pub const STATIC_BINARY_URI: &str = "test://static-binary";
pub const TEMPLATE_URI: &str = "test://template/{id}/data";
pub const WATCHED_URI: &str = "test://watched-resource";

const TOOLS: &[&str] = &[
    "test_simple_text",
    "test_image_content",
    "test_audio_content",
    "test_embedded_resource",
    "test_multiple_content_types",
    "test_tool_with_logging",
    "test_tool_with_progress",
    "test_error_handling",
    "test_sampling",
    "test_elicitation",
    "test_elicitation_sep1034_defaults",
    "test_elicitation_sep1330_enums",
    "test_missing_capability",
    "test_streaming_elicitation",
    "test_logging_tool",
];

pub fn capabilities() -> ServerCapabilities {
    #[allow(deprecated)] // logging/setLevel is still part of the 2025 revisions the suite checks
    ServerCapabilities::builder()
        .enable_logging()
        .enable_completions()
        .enable_prompts()
        .enable_resources()
        .enable_tools()
        .build()
}

pub fn has_tool(name: &str) -> bool {
    TOOLS.contains(&name)
}

fn empty_schema() -> std::sync::Arc<JsonObject> {
    schema(json!({ "type": "object", "properties": {} }))
}

pub fn tools() -> Vec<Tool> {
    vec![
        Tool::new(
            "test_simple_text",
            "Tests simple text content response",
            empty_schema(),
        ),
        Tool::new(
            "test_image_content",
            "Tests image content response",
            empty_schema(),
        ),
        Tool::new(
            "test_audio_content",
            "Tests audio content response",
            empty_schema(),
        ),
        Tool::new(
            "test_embedded_resource",
            "Tests embedded resource content response",
            empty_schema(),
        ),
        Tool::new(
            "test_multiple_content_types",
            "Tests response with multiple content types (text, image, resource)",
            empty_schema(),
        ),
        Tool::new(
            "test_tool_with_logging",
            "Tests tool that emits log messages during execution",
            empty_schema(),
        ),
        Tool::new(
            "test_tool_with_progress",
            "Tests tool that reports progress notifications",
            empty_schema(),
        ),
        Tool::new(
            "test_error_handling",
            "Tests error response handling",
            empty_schema(),
        ),
        Tool::new(
            "test_sampling",
            "Tests server-initiated sampling (LLM completion request)",
            schema(json!({
                "type": "object",
                "properties": { "prompt": { "type": "string", "description": "The prompt to send to the LLM" } },
                "required": ["prompt"]
            })),
        ),
        Tool::new(
            "test_elicitation",
            "Tests server-initiated elicitation (user input request)",
            schema(json!({
                "type": "object",
                "properties": { "message": { "type": "string", "description": "The message to show the user" } },
                "required": ["message"]
            })),
        ),
        Tool::new(
            "test_elicitation_sep1034_defaults",
            "Tests elicitation with default values for all primitive types (SEP-1034)",
            empty_schema(),
        ),
        Tool::new(
            "test_elicitation_sep1330_enums",
            "Tests elicitation with enum schema improvements (SEP-1330)",
            empty_schema(),
        ),
        Tool::new(
            "test_missing_capability",
            "Needs the client's sampling capability; refuses with -32021 without it",
            empty_schema(),
        ),
        Tool::new(
            "test_streaming_elicitation",
            "Streams progress, never a server request, then completes",
            empty_schema(),
        ),
        Tool::new(
            "test_logging_tool",
            "Logs only when the request asks for a log level",
            empty_schema(),
        ),
    ]
}

fn embedded_text(uri: &str, text: &str) -> ContentBlock {
    ContentBlock::resource(ResourceContents::TextResourceContents {
        uri: uri.to_owned(),
        mime_type: Some("text/plain".to_owned()),
        text: text.to_owned(),
        meta: None,
    })
}

/// Whether the caller speaks a revision in which the server may send requests back (sampling,
/// elicitation); 2026-07-28 forbids them.
fn may_request_client(cx: &CallContext<'_>) -> bool {
    cx.request
        .protocol_version()
        .is_none_or(|v| v.as_str() < "2026-07-28")
}

fn text_of(arguments: &JsonObject, field: &str, default: &str) -> String {
    arguments
        .get(field)
        .and_then(|v| v.as_str())
        .unwrap_or(default)
        .to_owned()
}

fn client_failed(what: &str, e: impl std::fmt::Display) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(format!("{what} failed: {e}"))])
}

/// Sends `elicitation/create` with a form schema given as JSON.
async fn elicit(cx: &CallContext<'_>, message: &str, schema: serde_json::Value) -> CallToolResult {
    if !may_request_client(cx) {
        return CallToolResult::error(vec![ContentBlock::text(
            "elicitation needs a 2025-era session: this protocol revision has no server requests",
        )]);
    }
    let params: ElicitRequestParams = match serde_json::from_value(json!({
        "mode": "form",
        "message": message,
        "requestedSchema": schema,
    })) {
        Ok(p) => p,
        Err(e) => return client_failed("building the elicitation", e),
    };
    match cx.peer.create_elicitation(params).await {
        Ok(result) => CallToolResult::success(vec![ContentBlock::text(format!(
            "Elicitation completed: action={}, content={}",
            serde_json::to_value(&result.action).unwrap_or_default(),
            result.content.unwrap_or_default()
        ))]),
        Err(e) => client_failed("elicitation", e),
    }
}

pub async fn call(
    cx: &CallContext<'_>,
    name: &str,
    arguments: &JsonObject,
) -> Result<CallToolResult, ErrorData> {
    Ok(match name {
        "test_missing_capability" => {
            let has_sampling = cx
                .request
                .client_capabilities()
                .is_some_and(|c| c.sampling.is_some());
            if !has_sampling {
                let required: rmcp::model::ClientCapabilities =
                    serde_json::from_value(json!({ "sampling": {} })).unwrap_or_default();
                return Err(ErrorData::missing_required_client_capability(required));
            }
            CallToolResult::success(vec![ContentBlock::text(
                "the client can sample, so this tool could ask it to",
            )])
        }
        "test_streaming_elicitation" => {
            if let Some(token) = cx.request.meta.get_progress_token() {
                let _ = cx
                    .peer
                    .notify_progress(ProgressNotificationParam::new(token, 1.0))
                    .await;
            }
            CallToolResult::success(vec![ContentBlock::text(
                "streamed without asking the client anything",
            )])
        }
        "test_logging_tool" => {
            if let Some(level) = cx.request.meta.log_level() {
                let _ = cx
                    .peer
                    .notify_logging_message(LoggingMessageNotificationParam::new(
                        level,
                        json!("logged because the request asked for it"),
                    ))
                    .await;
            }
            CallToolResult::success(vec![ContentBlock::text("logging tool done")])
        }
        "test_tool_with_logging" => {
            for step in [
                "Tool execution started",
                "Tool processing data",
                "Tool execution completed",
            ] {
                let sent = cx
                    .peer
                    .notify_logging_message(LoggingMessageNotificationParam::new(
                        LoggingLevel::Info,
                        json!(step),
                    ))
                    .await;
                if let Err(e) = sent {
                    return Ok(client_failed("logging", e));
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            CallToolResult::success(vec![ContentBlock::text(
                "Tool with logging executed successfully",
            )])
        }
        "test_tool_with_progress" => {
            let token = cx.request.meta.get_progress_token();
            if let Some(token) = &token {
                for (i, progress) in [0.0, 50.0, 100.0].into_iter().enumerate() {
                    let mut param = ProgressNotificationParam::new(token.clone(), progress);
                    param.total = Some(100.0);
                    param.message = Some(format!("Completed step {i} of 2"));
                    if let Err(e) = cx.peer.notify_progress(param).await {
                        return Ok(client_failed("progress", e));
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
            let text = token
                .map(|t| match serde_json::to_value(&t) {
                    Ok(serde_json::Value::String(s)) => s,
                    Ok(other) => other.to_string(),
                    Err(_) => String::new(),
                })
                .unwrap_or_else(|| "no progress token".to_owned());
            CallToolResult::success(vec![ContentBlock::text(text)])
        }
        "test_sampling" => {
            if !may_request_client(cx) {
                return Ok(CallToolResult::error(vec![ContentBlock::text(
                    "sampling needs a 2025-era session: this protocol revision has no server requests",
                )]));
            }
            let prompt = text_of(arguments, "prompt", "Hello");
            let params: CreateMessageRequestParams = match serde_json::from_value(json!({
                "messages": [{ "role": "user", "content": { "type": "text", "text": prompt } }],
                "maxTokens": 100,
            })) {
                Ok(p) => p,
                Err(e) => return Ok(client_failed("building the sampling request", e)),
            };
            let reply = cx.peer.create_message(params).await;
            match reply {
                Ok(result) => {
                    let content = serde_json::to_value(&result.message.content).unwrap_or_default();
                    let text = content["text"].as_str().map(str::to_owned).unwrap_or_else(|| content.to_string());
                    CallToolResult::success(vec![ContentBlock::text(format!("LLM response: {text}"))])
                }
                Err(e) => client_failed("sampling", e),
            }
        }
        "test_elicitation" => {
            let message = text_of(arguments, "message", "Please provide your information");
            elicit(
                cx,
                &message,
                json!({
                    "type": "object",
                    "properties": {
                        "username": { "type": "string", "description": "User's response" },
                        "email": { "type": "string", "description": "User's email address" }
                    },
                    "required": ["username", "email"]
                }),
            )
            .await
        }
        "test_elicitation_sep1034_defaults" => {
            elicit(
                cx,
                "Please review and update the form fields with defaults",
                json!({
                    "type": "object",
                    "properties": {
                        "name": { "type": "string", "description": "User name", "default": "John Doe" },
                        "age": { "type": "integer", "description": "User age", "default": 30 },
                        "score": { "type": "number", "description": "User score", "default": 95.5 },
                        "status": { "type": "string", "description": "User status",
                                    "enum": ["active", "inactive", "pending"], "default": "active" },
                        "verified": { "type": "boolean", "description": "Verification status", "default": true }
                    },
                    "required": []
                }),
            )
            .await
        }
        "test_elicitation_sep1330_enums" => {
            elicit(
                cx,
                "Please select options from the enum fields",
                json!({
                    "type": "object",
                    "properties": {
                        "untitledSingle": { "type": "string", "description": "Choose an option",
                                            "enum": ["option1", "option2", "option3"] },
                        "titledSingle": { "type": "string", "description": "Choose a titled option",
                                          "oneOf": [
                                              { "const": "value1", "title": "First Option" },
                                              { "const": "value2", "title": "Second Option" },
                                              { "const": "value3", "title": "Third Option" }
                                          ] },
                        "legacyEnum": { "type": "string", "description": "Choose a legacy option",
                                        "enum": ["opt1", "opt2", "opt3"],
                                        "enumNames": ["Option One", "Option Two", "Option Three"] },
                        "untitledMulti": { "type": "array", "description": "Choose multiple options",
                                           "minItems": 1, "maxItems": 3,
                                           "items": { "type": "string", "enum": ["option1", "option2", "option3"] } },
                        "titledMulti": { "type": "array", "description": "Choose multiple titled options",
                                         "minItems": 1, "maxItems": 3,
                                         "items": { "anyOf": [
                                             { "const": "value1", "title": "First Choice" },
                                             { "const": "value2", "title": "Second Choice" },
                                             { "const": "value3", "title": "Third Choice" }
                                         ] } }
                    },
                    "required": []
                }),
            )
            .await
        }
        "test_simple_text" => CallToolResult::success(vec![ContentBlock::text(
            "This is a simple text response for testing.",
        )]),
        "test_image_content" => {
            CallToolResult::success(vec![ContentBlock::image(PNG_BASE64, "image/png")])
        }
        "test_audio_content" => {
            CallToolResult::success(vec![ContentBlock::audio(WAV_BASE64, "audio/wav")])
        }
        "test_embedded_resource" => CallToolResult::success(vec![embedded_text(
            "test://embedded-resource",
            "This is an embedded resource content.",
        )]),
        "test_multiple_content_types" => CallToolResult::success(vec![
            ContentBlock::text("Multiple content types test:"),
            ContentBlock::image(PNG_BASE64, "image/png"),
            ContentBlock::resource(ResourceContents::TextResourceContents {
                uri: "test://mixed-content-resource".to_owned(),
                mime_type: Some("application/json".to_owned()),
                text: json!({ "test": "data", "value": 123 }).to_string(),
                meta: None,
            }),
        ]),
        "test_error_handling" => CallToolResult::error(vec![ContentBlock::text(
            "This tool intentionally returns an error for testing",
        )]),
        other => {
            return Err(ErrorData::invalid_params(
                format!("unknown tool: {other}"),
                None,
            ))
        }
    })
}

pub fn list_prompts() -> ListPromptsResult {
    ListPromptsResult::with_all_items(vec![
        Prompt::new(
            super::conformance_rounds::PROMPT,
            Some("A prompt that first asks the client for context (SEP-2322)"),
            None,
        ),
        Prompt::new(
            "test_simple_prompt",
            Some("A simple prompt without arguments"),
            None,
        ),
        Prompt::new(
            "test_prompt_with_arguments",
            Some("A prompt with required arguments"),
            Some(vec![
                PromptArgument::new("arg1")
                    .with_description("First test argument")
                    .with_required(true),
                PromptArgument::new("arg2")
                    .with_description("Second test argument")
                    .with_required(true),
            ]),
        ),
        Prompt::new(
            "test_prompt_with_embedded_resource",
            Some("A prompt that includes an embedded resource"),
            Some(vec![PromptArgument::new("resourceUri")
                .with_description("URI of the resource to embed")
                .with_required(true)]),
        ),
        Prompt::new(
            "test_prompt_with_image",
            Some("A prompt that includes an image"),
            None,
        ),
    ])
}

fn argument(request: &GetPromptRequestParams, name: &str) -> Result<String, ErrorData> {
    request
        .arguments
        .as_ref()
        .and_then(|a| a.get(name))
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .ok_or_else(|| ErrorData::invalid_params(format!("missing argument {name}"), None))
}

pub fn get_prompt(request: GetPromptRequestParams) -> Result<GetPromptResult, ErrorData> {
    let messages = match request.name.as_str() {
        "test_simple_prompt" => vec![PromptMessage::new_text(
            PromptMessageRole::User,
            "This is a simple prompt for testing.",
        )],
        "test_prompt_with_arguments" => {
            let arg1 = argument(&request, "arg1")?;
            let arg2 = argument(&request, "arg2")?;
            vec![PromptMessage::new_text(
                PromptMessageRole::User,
                format!("Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"),
            )]
        }
        "test_prompt_with_embedded_resource" => {
            let uri = argument(&request, "resourceUri")?;
            vec![
                PromptMessage::new_resource(
                    PromptMessageRole::User,
                    uri,
                    Some("text/plain".to_owned()),
                    Some("Embedded resource content for testing.".to_owned()),
                    None,
                    None,
                    None,
                ),
                PromptMessage::new_text(
                    PromptMessageRole::User,
                    "Please process the embedded resource above.",
                ),
            ]
        }
        "test_prompt_with_image" => vec![
            PromptMessage::new(
                PromptMessageRole::User,
                ContentBlock::Image(ImageContent::new(PNG_BASE64, "image/png")),
            ),
            PromptMessage::new_text(PromptMessageRole::User, "Please analyze the image above."),
        ],
        other => {
            return Err(ErrorData::invalid_params(
                format!("unknown prompt: {other}"),
                None,
            ))
        }
    };
    Ok(GetPromptResult::new(messages))
}

pub fn list_resources() -> ListResourcesResult {
    ListResourcesResult::with_all_items(vec![
        Resource::new(STATIC_TEXT_URI, "Static Text Resource")
            .with_description("A static text resource for testing")
            .with_mime_type("text/plain"),
        Resource::new(STATIC_BINARY_URI, "Static Binary Resource")
            .with_description("A static binary resource (image) for testing")
            .with_mime_type("image/png"),
        Resource::new(WATCHED_URI, "Watched Resource")
            .with_description("A resource that can be subscribed to")
            .with_mime_type("text/plain"),
    ])
}

pub fn list_resource_templates() -> ListResourceTemplatesResult {
    let mut template = ResourceTemplate::new(TEMPLATE_URI, "Resource Template")
        .with_description("A resource template with parameter substitution");
    template.mime_type = Some("application/json".to_owned());
    ListResourceTemplatesResult::with_all_items(vec![template])
}

pub fn read_resource(request: ReadResourceRequestParams) -> Result<ReadResourceResult, ErrorData> {
    let uri = request.uri.as_str();
    let contents = if uri == STATIC_TEXT_URI {
        ResourceContents::TextResourceContents {
            uri: uri.to_owned(),
            mime_type: Some("text/plain".to_owned()),
            text: STATIC_TEXT.to_owned(),
            meta: None,
        }
    } else if uri == STATIC_BINARY_URI {
        ResourceContents::BlobResourceContents {
            uri: uri.to_owned(),
            mime_type: Some("image/png".to_owned()),
            blob: PNG_BASE64.to_owned(),
            meta: None,
        }
    } else if uri == WATCHED_URI {
        ResourceContents::TextResourceContents {
            uri: uri.to_owned(),
            mime_type: Some("text/plain".to_owned()),
            text: "Watched resource content".to_owned(),
            meta: None,
        }
    } else if let Some(id) = uri
        .strip_prefix("test://template/")
        .and_then(|rest| rest.strip_suffix("/data"))
        .filter(|id| !id.is_empty() && !id.contains('/'))
    {
        ResourceContents::TextResourceContents {
            uri: uri.to_owned(),
            mime_type: Some("application/json".to_owned()),
            text: json!({
                "id": id,
                "templateTest": true,
                "data": format!("Data for ID: {id}"),
            })
            .to_string(),
            meta: None,
        }
    } else {
        return Err(ErrorData::resource_not_found(
            format!("no resource {uri}"),
            Some(json!({ "uri": uri })),
        ));
    };
    Ok(ReadResourceResult::new(vec![contents]))
}

pub fn subscribe(uri: &str) -> Result<(), ErrorData> {
    match uri {
        STATIC_TEXT_URI | STATIC_BINARY_URI | WATCHED_URI => Ok(()),
        _ => Err(ErrorData::resource_not_found(
            format!("no resource {uri}"),
            None,
        )),
    }
}

pub fn complete(_request: CompleteRequestParams) -> Result<CompleteResult, ErrorData> {
    Ok(CompleteResult::new(CompletionInfo::default()))
}
