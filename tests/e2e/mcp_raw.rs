//! A deliberately plain MCP client over reqwest: it sends exactly the bytes a test names, so
//! tests can speak both protocol eras and send the malformed requests real SDKs never would.

#![allow(dead_code)]

use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};

pub const LEGACY: &str = "2025-11-25";
pub const MODERN: &str = "2026-07-28";

pub struct Reply {
    pub status: StatusCode,
    pub session_id: Option<String>,
    pub content_type: String,
    pub text: String,
}

impl Reply {
    /// The JSON-RPC message of a reply: the body itself, or the last `data:` line of an SSE
    /// stream that holds a JSON-RPC response.
    pub fn message(&self) -> Value {
        if self.content_type.starts_with("text/event-stream") {
            self.text
                .lines()
                .rev()
                .filter_map(|l| l.strip_prefix("data:"))
                .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
                .find(|v| v.get("result").is_some() || v.get("error").is_some())
                .unwrap_or(Value::Null)
        } else {
            serde_json::from_str(&self.text).unwrap_or(Value::Null)
        }
    }

    pub fn result(&self) -> Value {
        let message = self.message();
        assert!(
            message.get("result").is_some(),
            "expected a result, got {} {}: {}",
            self.status,
            self.content_type,
            self.text
        );
        message["result"].clone()
    }

    pub fn error_code(&self) -> Option<i64> {
        self.message()["error"]["code"].as_i64()
    }
}

/// One MCP connection: a URL, an optional Host override, and (2025 era) a session.
pub struct Mcp {
    pub http: Client,
    pub url: String,
    pub host: Option<String>,
    pub session_id: Option<String>,
    pub version: &'static str,
    /// An OAuth access token sent as `Authorization: Bearer`.
    pub bearer: Option<String>,
    next_id: std::sync::atomic::AtomicI64,
}

impl Mcp {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            http: Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .expect("client"),
            url: url.into(),
            host: None,
            session_id: None,
            version: LEGACY,
            bearer: None,
            next_id: std::sync::atomic::AtomicI64::new(1),
        }
    }

    pub fn with_host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    pub fn with_bearer(mut self, token: impl Into<String>) -> Self {
        self.bearer = Some(token.into());
        self
    }

    pub fn modern(mut self) -> Self {
        self.version = MODERN;
        self
    }

    pub fn request(&self, method: Method) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .request(method, &self.url)
            .header("accept", "application/json, text/event-stream");
        if let Some(host) = &self.host {
            req = req.header("host", host);
        }
        if let Some(id) = &self.session_id {
            req = req.header("mcp-session-id", id);
        }
        if let Some(token) = &self.bearer {
            req = req.bearer_auth(token);
        }
        req
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        let resp = req.send().await.expect("MCP request");
        let status = resp.status();
        let session_id = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let text = resp.text().await.unwrap_or_default();
        Reply {
            status,
            session_id,
            content_type,
            text,
        }
    }

    /// POSTs a raw body with the headers of this connection's era.
    pub async fn post_raw(&self, body: impl Into<String>) -> Reply {
        let mut req = self
            .request(Method::POST)
            .header("content-type", "application/json")
            .body(body.into());
        if self.session_id.is_some() || self.version == MODERN {
            req = req.header("mcp-protocol-version", self.version);
        }
        self.send(req).await
    }

    fn meta(&self) -> Value {
        json!({
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientInfo": { "name": "e2e-raw", "version": "1.0" },
            "io.modelcontextprotocol/clientCapabilities": {},
        })
    }

    /// A JSON-RPC request; 2026-era requests carry the per-request `_meta` and headers.
    pub async fn call(&self, method: &str, params: Value) -> Reply {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut params = params;
        if self.version == MODERN {
            if let Some(obj) = params.as_object_mut() {
                obj.insert("_meta".to_owned(), self.meta());
            }
        }
        let body = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        let mut req = self
            .request(Method::POST)
            .header("content-type", "application/json")
            .body(body.to_string());
        if self.session_id.is_some() || self.version == MODERN {
            req = req.header("mcp-protocol-version", self.version);
        }
        if self.version == MODERN {
            req = req.header("mcp-method", method);
            // The name of a tool or prompt, the URI of a resource.
            let params = &body["params"];
            if let Some(name) = params["name"].as_str().or(params["uri"].as_str()) {
                req = req.header("mcp-name", name);
            }
        }
        self.send(req).await
    }

    pub async fn notify(&self, method: &str) -> Reply {
        let body = json!({ "jsonrpc": "2.0", "method": method });
        self.post_raw(body.to_string()).await
    }

    /// 2025 era: initialize, keep the session, send `initialized`.
    pub async fn initialize(&mut self, client_name: &str) -> Reply {
        let reply = self
            .call(
                "initialize",
                json!({
                    "protocolVersion": LEGACY,
                    "capabilities": {},
                    "clientInfo": { "name": client_name, "version": "1.0" },
                }),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "initialize: {}", reply.text);
        self.session_id = reply.session_id.clone();
        assert!(self.session_id.is_some(), "initialize returned no session");
        let ack = self.notify("notifications/initialized").await;
        assert_eq!(
            ack.status,
            StatusCode::ACCEPTED,
            "initialized: {}",
            ack.text
        );
        reply
    }

    pub async fn tool_names(&self) -> Vec<String> {
        let reply = self.call("tools/list", json!({})).await;
        reply.result()["tools"]
            .as_array()
            .map(|tools| {
                tools
                    .iter()
                    .filter_map(|t| t["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub async fn call_tool(&self, name: &str, arguments: Value) -> Reply {
        self.call(
            "tools/call",
            json!({ "name": name, "arguments": arguments }),
        )
        .await
    }

    pub async fn delete_session(&self) -> Reply {
        let req = self
            .request(Method::DELETE)
            .header("mcp-protocol-version", self.version);
        self.send(req).await
    }
}
