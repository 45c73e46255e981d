//! Latency of MCP requests by method (and by tool for `tools/call`). The handler names what a
//! request turned out to be; the edge records its latency once it is answered. The label sets
//! are fixed, so each has one histogram handle, made once: recording is an atomic push.

use crate::tools::{conformance, conformance_rounds, support, walkthroughs};
use metrics::Histogram;

/// Seconds from the request's arrival at the edge to its answer, by JSON-RPC method.
pub const MCP_REQUEST_DURATION: &str = "mcplatform_mcp_request_duration_seconds";

/// What an MCP request was: a method, and for `tools/call` which tool (our own by name; the
/// conformance fixtures together; anything else as unknown, so a client cannot mint labels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Initialize,
    Discover,
    Ping,
    ToolsList,
    CallGetSupport,
    CallListWalkthroughs,
    CallSelectWalkthrough,
    CallNextWalkthroughStep,
    CallConformance,
    CallUnknown,
    PromptsList,
    PromptsGet,
    ResourcesList,
    ResourceTemplatesList,
    ResourcesRead,
    ResourcesSubscribe,
    ResourcesUnsubscribe,
    CompletionComplete,
    LoggingSetLevel,
    /// A method we do not serve, or params that fit none.
    Other,
}

impl Method {
    const ALL: [Method; 20] = [
        Method::Initialize,
        Method::Discover,
        Method::Ping,
        Method::ToolsList,
        Method::CallGetSupport,
        Method::CallListWalkthroughs,
        Method::CallSelectWalkthrough,
        Method::CallNextWalkthroughStep,
        Method::CallConformance,
        Method::CallUnknown,
        Method::PromptsList,
        Method::PromptsGet,
        Method::ResourcesList,
        Method::ResourceTemplatesList,
        Method::ResourcesRead,
        Method::ResourcesSubscribe,
        Method::ResourcesUnsubscribe,
        Method::CompletionComplete,
        Method::LoggingSetLevel,
        Method::Other,
    ];

    /// A `tools/call` of the tool with this name.
    pub fn tool_call(name: &str) -> Self {
        match name {
            support::NAME => Method::CallGetSupport,
            walkthroughs::LIST => Method::CallListWalkthroughs,
            walkthroughs::SELECT => Method::CallSelectWalkthrough,
            walkthroughs::NEXT => Method::CallNextWalkthroughStep,
            _ if conformance::has_tool(name) || conformance_rounds::TOOLS.contains(&name) => {
                Method::CallConformance
            }
            _ => Method::CallUnknown,
        }
    }

    /// The JSON-RPC method, and the tool of a `tools/call`.
    pub fn labels(self) -> (&'static str, Option<&'static str>) {
        let call = |tool| ("tools/call", Some(tool));
        match self {
            Method::Initialize => ("initialize", None),
            Method::Discover => ("server/discover", None),
            Method::Ping => ("ping", None),
            Method::ToolsList => ("tools/list", None),
            Method::CallGetSupport => call(support::NAME),
            Method::CallListWalkthroughs => call(walkthroughs::LIST),
            Method::CallSelectWalkthrough => call(walkthroughs::SELECT),
            Method::CallNextWalkthroughStep => call(walkthroughs::NEXT),
            Method::CallConformance => call("conformance"),
            Method::CallUnknown => call("unknown"),
            Method::PromptsList => ("prompts/list", None),
            Method::PromptsGet => ("prompts/get", None),
            Method::ResourcesList => ("resources/list", None),
            Method::ResourceTemplatesList => ("resources/templates/list", None),
            Method::ResourcesRead => ("resources/read", None),
            Method::ResourcesSubscribe => ("resources/subscribe", None),
            Method::ResourcesUnsubscribe => ("resources/unsubscribe", None),
            Method::CompletionComplete => ("completion/complete", None),
            Method::LoggingSetLevel => ("logging/setLevel", None),
            Method::Other => ("other", None),
        }
    }
}

/// One histogram handle per [`Method`], registered with the recorder installed when the edge
/// was built (none in unit tests: then recording does nothing).
pub struct McpMetrics {
    by_method: Vec<Histogram>,
}

impl Default for McpMetrics {
    fn default() -> Self {
        metrics::describe_histogram!(
            MCP_REQUEST_DURATION,
            metrics::Unit::Seconds,
            "MCP request latency at the edge by JSON-RPC method (and tool of a tools/call)"
        );
        let by_method = Method::ALL
            .iter()
            .map(|m| match m.labels() {
                (method, None) => metrics::histogram!(MCP_REQUEST_DURATION, "method" => method),
                (method, Some(tool)) => {
                    metrics::histogram!(MCP_REQUEST_DURATION, "method" => method, "tool" => tool)
                }
            })
            .collect();
        Self { by_method }
    }
}

impl McpMetrics {
    pub fn record(&self, method: Method, elapsed: std::time::Duration) {
        if let Some(histogram) = self.by_method.get(method as usize) {
            histogram.record(elapsed.as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_has_its_own_handle_in_order() {
        for (i, m) in Method::ALL.iter().enumerate() {
            assert_eq!(*m as usize, i, "{m:?}");
        }
        assert_eq!(Method::tool_call("get_support"), Method::CallGetSupport);
        assert_eq!(Method::tool_call("no such tool"), Method::CallUnknown);
        assert_eq!(
            Method::tool_call(walkthroughs::NEXT).labels(),
            ("tools/call", Some("next_walkthrough_step"))
        );
    }
}
