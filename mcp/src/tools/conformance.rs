//! The conformance toolset: the fixtures the official MCP conformance suite
//! (`@modelcontextprotocol/conformance`) calls, served by a real tenant whose admin switched on
//! `conformance_fixtures`. Names, texts and data are the ones the suite compares against.

use super::{schema, CallContext};
use rmcp::model::{
    CallToolResult, CompleteRequestParams, CompleteResult, CompletionInfo, ContentBlock,
    GetPromptRequestParams, GetPromptResult, ImageContent, JsonObject, ListPromptsResult,
    ListResourceTemplatesResult, ListResourcesResult, Prompt, PromptArgument, PromptMessage,
    ReadResourceRequestParams, ReadResourceResult, Resource, ResourceContents, ResourceTemplate,
    Role as PromptMessageRole, ServerCapabilities, Tool,
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
    "test_error_handling",
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
            "test_error_handling",
            "Tests error response handling",
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

pub async fn call(
    _cx: &CallContext<'_>,
    name: &str,
    _arguments: &JsonObject,
) -> Result<CallToolResult, ErrorData> {
    Ok(match name {
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
