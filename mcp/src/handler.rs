//! The MCP server behind every tenant: one handler type whose answers depend on the server the
//! edge resolved for the current request (carried in the request's HTTP parts), so a config
//! change reaches even sessions that are already open.

use crate::identity::Caller;
use crate::metrics::Method;
use crate::recording::{self, RecordError};
use crate::sessions::RequestScope;
use crate::tenant::Tenant;
use crate::tools::{self, conformance, CallContext};
use crate::Core;
use domain::EventMetadata;
use eventstore::{ConflictPauses, EventStore, MAX_RETRIES};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CompleteRequestParams, CompleteResult, CustomRequest,
    CustomResult, DiscoverRequestParams, DiscoverResult, ErrorCode, GetPromptRequestParams,
    GetPromptResponse, Implementation, InitializeRequestParams, InitializeResult,
    ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, ListToolsResult,
    PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse, ServerCapabilities,
    ServerConfig, SubscribeRequestParams, UnsubscribeRequestParams,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Clone)]
pub struct McpHandler {
    pub core: Arc<Core>,
}

/// The tenant and caller of the request being served.
pub struct Served {
    pub tenant: Arc<Tenant>,
    /// Where everything the request writes is committed (see `RequestScope::store`).
    pub store: EventStore,
    pub caller: Caller,
    pub metadata: Arc<EventMetadata>,
    pub session_id: Option<String>,
}

fn scope(context: &RequestContext<RoleServer>) -> Result<&Arc<RequestScope>, ErrorData> {
    context
        .extensions
        .get::<axum::http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<Arc<RequestScope>>())
        .ok_or_else(|| ErrorData::internal_error("request arrived without its edge scope", None))
}

/// Names what the request is, for its latency metric.
fn name(context: &RequestContext<RoleServer>, method: Method) {
    if let Ok(scope) = scope(context) {
        let _ = scope.method.set(method);
    }
}

impl McpHandler {
    /// The tenant and caller of an accepted request: the end user its tracking id names comes
    /// into being here, with the first request the protocol accepted (see `RequestScope`). A
    /// request is decided first, so one we refuse never gets here (see [`McpHandler::accepted`]);
    /// only `tools/call` identifies before, since every call is recorded, unknown tools too.
    async fn served(
        &self,
        context: &RequestContext<RoleServer>,
        method: Method,
    ) -> Result<Served, ErrorData> {
        let scope = scope(context)?;
        let _ = scope.method.set(method);
        let identified = scope.identified(&self.core).await.map_err(|e| {
            tracing::error!(error = %e, "identifying the caller failed");
            ErrorData::internal_error("temporarily unavailable, please retry", None)
        })?;
        let session_id = context
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|parts| parts.headers.get("mcp-session-id"))
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(Served {
            tenant: scope.tenant.clone(),
            store: scope.store.clone(),
            caller: identified.caller.clone(),
            metadata: identified.metadata.clone(),
            session_id,
        })
    }

    /// An answer decided from the tenant alone: a refusal goes back as it is, and only an
    /// accepted request identifies its caller.
    async fn accepted<T>(
        &self,
        context: &RequestContext<RoleServer>,
        method: Method,
        answer: Result<T, ErrorData>,
    ) -> Result<T, ErrorData> {
        let answer = answer?;
        self.served(context, method).await?;
        Ok(answer)
    }
}

/// The tenant of a request not yet accepted, to decide on: reading it identifies nobody.
fn tenant(context: &RequestContext<RoleServer>) -> Result<Arc<Tenant>, ErrorData> {
    scope(context).map(|scope| scope.tenant.clone())
}

/// What a server advertises: tools always; the rest only with the conformance fixtures.
fn capabilities(tenant: &Tenant) -> ServerCapabilities {
    if tenant.conformance_fixtures {
        conformance::capabilities()
    } else {
        ServerCapabilities::builder().enable_tools().build()
    }
}

fn server_info(tenant: &Tenant) -> Implementation {
    let mut info = Implementation::new(tenant.slug.clone(), env!("CARGO_PKG_VERSION"));
    info.title = Some(tenant.name.clone());
    info
}

fn instructions(tenant: &Tenant) -> Option<String> {
    tenant.support_tool.then(|| {
        format!(
            "{} support: when the user is stuck or asks for a human, call get_support to open \
             a ticket with the team.",
            tenant.name
        )
    })
}

/// Prompts, resources, completion and logging exist only on servers with the conformance
/// fixtures; elsewhere they are unknown methods. Decided before the caller is identified, and
/// names the request for its metric.
fn fixtures_only(context: &RequestContext<RoleServer>, method: Method) -> Result<(), ErrorData> {
    name(context, method);
    if tenant(context)?.conformance_fixtures {
        Ok(())
    } else {
        Err(ErrorData::new(
            rmcp::model::ErrorCode::METHOD_NOT_FOUND,
            "this server offers tools only",
            None,
        ))
    }
}

impl ServerHandler for McpHandler {
    /// Used by rmcp where no request is at hand; per-request answers come from `initialize`
    /// and `discover`, which see the tenant.
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(conformance::capabilities())
            .with_server_info(Implementation::new("mcplatform", env!("CARGO_PKG_VERSION")))
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        name(&context, Method::Initialize);
        context.peer.set_peer_info(request.clone());
        let mut result = self.negotiate_initialize(&request)?;
        let served = self.served(&context, Method::Initialize).await?;
        result.capabilities = capabilities(&served.tenant);
        result.server_info = server_info(&served.tenant);
        result.instructions = instructions(&served.tenant);
        Ok(result)
    }

    async fn ping(&self, context: RequestContext<RoleServer>) -> Result<(), ErrorData> {
        name(&context, Method::Ping);
        Ok(())
    }

    async fn discover(
        &self,
        context: RequestContext<RoleServer>,
    ) -> Result<DiscoverResult, ErrorData> {
        let served = self.served(&context, Method::Discover).await?;
        let mut config = ServerConfig::new(capabilities(&served.tenant))
            .with_server_info(server_info(&served.tenant));
        config.instructions = instructions(&served.tenant);
        // Each tenant's answer is its own: never shared between authorization contexts.
        Ok(DiscoverResult::from_server_info(
            self.supported_protocol_versions().into_owned(),
            config,
        )
        .with_cache_scope(rmcp::model::CacheScope::Private))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        name(&context, Method::ToolsList);
        let tenant = tenant(&context)?;
        let walkthroughs = tools::offers_walkthroughs(&self.core, &tenant).await?;
        let mut result = ListToolsResult::with_all_items(tools::list(&tenant, walkthroughs));
        result.cache_scope = Some(rmcp::model::CacheScope::Private);
        self.accepted(&context, Method::ToolsList, Ok(result)).await
    }

    fn get_tool(&self, _name: &str) -> Option<rmcp::model::Tool> {
        // Tools differ per tenant and this hook sees no request; rmcp then skips the optional
        // `Mcp-Param-*` header checks, which our tools do not declare.
        None
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let served = self
            .served(&context, Method::tool_call(&request.name))
            .await?;
        let started = Instant::now();
        let arguments = request.arguments.clone().unwrap_or_default();
        let client = context.client_info();
        let retry_memo = Mutex::new(None);
        let mut attempts = 0;
        let mut pauses = ConflictPauses::new();
        loop {
            let staged = Mutex::new(None);
            let after_commit = Mutex::new(None);
            let cx = CallContext {
                core: &self.core,
                tenant: &served.tenant,
                store: &served.store,
                caller: &served.caller,
                metadata: &served.metadata,
                peer: &context.peer,
                request: &context,
                staged: &staged,
                retry_memo: &retry_memo,
                after_commit: &after_commit,
            };
            let outcome = tools::call(&cx, &request, &arguments).await;
            let staged = staged.into_inner().ok().flatten();
            match recording::record(
                &served,
                &request.name,
                &arguments,
                &outcome,
                started.elapsed(),
                client.as_ref(),
                staged,
            )
            .await
            {
                Ok(()) => {
                    if let Some(after) = after_commit.into_inner().ok().flatten() {
                        after();
                    }
                    return outcome;
                }
                // Only staged writes conflict; run the call again on fresh state.
                Err(RecordError::Conflict) if attempts < MAX_RETRIES => {
                    attempts += 1;
                    pauses.pause().await;
                }
                Err(RecordError::Conflict) => {
                    return Err(ErrorData::internal_error(
                        "this call kept colliding with another one on the same data; nothing \
                         was changed, please retry",
                        None,
                    ))
                }
                Err(RecordError::Failed(e)) => return Err(e),
            }
        }
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        fixtures_only(&context, Method::PromptsList)?;
        let answer = Ok(conformance::list_prompts());
        self.accepted(&context, Method::PromptsList, answer).await
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        fixtures_only(&context, Method::PromptsGet)?;
        let answer = if request.name == tools::conformance_rounds::PROMPT {
            tools::conformance_rounds::get_prompt(&request)
        } else {
            conformance::get_prompt(request).map(Into::into)
        };
        self.accepted(&context, Method::PromptsGet, answer).await
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        fixtures_only(&context, Method::ResourcesList)?;
        let answer = Ok(conformance::list_resources());
        self.accepted(&context, Method::ResourcesList, answer).await
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        fixtures_only(&context, Method::ResourceTemplatesList)?;
        let answer = Ok(conformance::list_resource_templates());
        self.accepted(&context, Method::ResourceTemplatesList, answer)
            .await
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        fixtures_only(&context, Method::ResourcesRead)?;
        let answer = conformance::read_resource(request).map(Into::into);
        self.accepted(&context, Method::ResourcesRead, answer).await
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        fixtures_only(&context, Method::ResourcesSubscribe)?;
        let answer = conformance::subscribe(&request.uri);
        self.accepted(&context, Method::ResourcesSubscribe, answer)
            .await
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        fixtures_only(&context, Method::ResourcesUnsubscribe)?;
        let answer = conformance::subscribe(&request.uri);
        self.accepted(&context, Method::ResourcesUnsubscribe, answer)
            .await
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        fixtures_only(&context, Method::CompletionComplete)?;
        let answer = conformance::complete(request);
        self.accepted(&context, Method::CompletionComplete, answer)
            .await
    }

    /// rmcp reads a request by trying each method's typed params in turn; a request for a
    /// method we serve whose params fit none of them arrives here, as a custom request. That is
    /// the client's mistake in the params (-32602, saying what is wrong), not an unknown method.
    async fn on_custom_request(
        &self,
        request: CustomRequest,
        context: RequestContext<RoleServer>,
    ) -> Result<CustomResult, ErrorData> {
        name(&context, Method::Other);
        let CustomRequest { method, params, .. } = request;
        let method_not_found = || {
            ErrorData::new(
                ErrorCode::METHOD_NOT_FOUND,
                format!("Method not found: {method}"),
                None,
            )
        };
        // The 2026-07-28 revision removed these methods: unknown there, whatever their params.
        if is_stateless_era(&context) && REMOVED_IN_2026.contains(&method.as_str()) {
            return Err(method_not_found());
        }
        // Prompts, resources, completion and logging are served only with the conformance
        // fixtures; elsewhere they are unknown whatever their params, as `fixtures_only` says.
        // (Every answer here is a refusal: nobody is identified.)
        if is_fixture_method(&method) {
            fixtures_only(&context, Method::Other)?;
        }
        Err(match params_problem(&method, params) {
            Some(problem) => {
                ErrorData::invalid_params(format!("Invalid params for {method}: {problem}"), None)
            }
            None => method_not_found(),
        })
    }

    #[allow(deprecated)] // logging/setLevel is still part of the 2025 revisions
    async fn set_level(
        &self,
        _request: rmcp::model::SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        fixtures_only(&context, Method::LoggingSetLevel)?;
        self.accepted(&context, Method::LoggingSetLevel, Ok(()))
            .await
    }
}

/// Methods of the 2025 revisions that the 2026-07-28 revision removed.
const REMOVED_IN_2026: &[&str] = &[
    "initialize",
    "ping",
    "logging/setLevel",
    "resources/subscribe",
    "resources/unsubscribe",
];

/// Whether the request declares the stateless 2026-era protocol (as the edge decides it).
fn is_stateless_era(context: &RequestContext<RoleServer>) -> bool {
    context
        .extensions
        .get::<axum::http::request::Parts>()
        .is_some_and(|parts| crate::edge::declares_stateless_era(&parts.headers))
}

/// Methods only a server with the conformance fixtures serves.
fn is_fixture_method(method: &str) -> bool {
    method.starts_with("prompts/")
        || method.starts_with("resources/")
        || matches!(method, "completion/complete" | "logging/setLevel")
}

/// What is wrong with the params of a request for a method we serve, in serde's words; `None`
/// for a method we do not serve.
#[allow(deprecated)] // logging/setLevel is still part of the 2025 revisions
fn params_problem(method: &str, params: Option<Value>) -> Option<String> {
    fn read<T: DeserializeOwned>(params: Option<Value>) -> String {
        match params {
            None => "params are required".to_owned(),
            Some(value) if !value.is_object() => "params must be a JSON object".to_owned(),
            // Read from a value, serde gives no parser position; the path names the field.
            Some(value) => match serde_path_to_error::deserialize::<_, T>(value) {
                Err(e) if e.path().to_string() == "." => e.into_inner().to_string(),
                Err(e) => format!("`{}`: {}", e.path(), e.inner()),
                Ok(_) => "params are not in the form this method takes".to_owned(),
            },
        }
    }
    fn optional<T: DeserializeOwned>(params: Option<Value>) -> String {
        match params {
            None => "params are not in the form this method takes".to_owned(),
            some => read::<T>(some),
        }
    }
    Some(match method {
        "initialize" => read::<InitializeRequestParams>(params),
        "server/discover" => read::<DiscoverRequestParams>(params),
        "tools/call" => read::<CallToolRequestParams>(params),
        "prompts/get" => read::<GetPromptRequestParams>(params),
        "resources/read" => read::<ReadResourceRequestParams>(params),
        "resources/subscribe" => read::<SubscribeRequestParams>(params),
        "resources/unsubscribe" => read::<UnsubscribeRequestParams>(params),
        "completion/complete" => read::<CompleteRequestParams>(params),
        "logging/setLevel" => read::<rmcp::model::SetLevelRequestParams>(params),
        "tools/list" | "prompts/list" | "resources/list" | "resources/templates/list" => {
            optional::<PaginatedRequestParams>(params)
        }
        "ping" => "params are not in the form this method takes".to_owned(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::params_problem;
    use serde_json::json;

    #[test]
    fn a_params_problem_names_the_field_and_no_parser_position() {
        let problem = |params| params_problem("tools/call", Some(params)).unwrap();
        assert_eq!(
            problem(json!({ "name": 5 })),
            "`name`: invalid type: integer `5`, expected a string"
        );
        assert_eq!(
            problem(json!({ "name": "t", "arguments": [1] })),
            "`arguments`: invalid type: sequence, expected a map"
        );
        assert_eq!(problem(json!({ "arguments": {} })), "missing field `name`");
        assert!(!problem(json!({ "name": [] })).contains("line"));
    }
}
