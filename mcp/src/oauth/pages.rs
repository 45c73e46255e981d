//! The few pages the authorization server shows end users in their browser: the consent page
//! and the page of a sign-in that cannot go back to the client. Plain server-rendered HTML
//! with no script; every page refuses to be framed (against clickjacking the consent) and is
//! never cached.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// `s` safe inside HTML text and double-quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;background:#f6f7f9;color:#1d2330;\
margin:0;display:flex;min-height:100vh;align-items:center;justify-content:center}\
main{background:#fff;border-radius:12px;box-shadow:0 2px 12px #0001;padding:2rem;max-width:30rem}\
h1{font-size:1.25rem;margin-top:0}code{background:#eef0f4;padding:.1rem .3rem;border-radius:4px;\
word-break:break-all}ul{padding-left:1.2rem}.actions{display:flex;gap:.75rem;margin-top:1.5rem}\
button{font-size:1rem;padding:.6rem 1.2rem;border-radius:8px;border:1px solid #c9ced8;\
background:#fff;cursor:pointer}button.allow{background:#2456d6;color:#fff;border-color:#2456d6}\
.muted{color:#5b6475;font-size:.9rem}";

/// An HTML page with the headers every page of ours carries.
pub fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body><main>{body}</main></body></html>",
        escape(title)
    );
    let mut response = (status, html).into_response();
    secure_headers(&mut response);
    response
}

/// No framing by anyone (the consent must be clicked on our page, in the open), no script, no
/// caching, no referrer carrying the request's parameters elsewhere. `form-action` is left out
/// on purpose: the consent POST answers with a redirect to the identity provider, which
/// browsers would check against it.
pub fn secure_headers(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; \
             base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// What the consent page shows and posts back.
pub struct Consent<'a> {
    pub server_name: &'a str,
    pub client_name: Option<&'a str>,
    pub client_id: &'a str,
    pub redirect_host: &'a str,
    /// The MCP endpoint the tokens will be for.
    pub resource: &'a str,
    pub scopes: &'a [String],
    pub provider_name: &'a str,
    /// Where the form posts: `{issuer}/oauth/authorize`.
    pub action: &'a str,
    /// The authorization request's parameters, posted back as they came, plus the CSRF token.
    pub hidden: &'a [(String, String)],
}

fn scope_words(scope: &str) -> &'static str {
    match scope {
        "mcp" => "use this MCP server's tools on your behalf",
        "openid" => "know who you are",
        "email" => "see your email address",
        "profile" => "see your name",
        "offline_access" => "stay signed in",
        _ => "an additional permission",
    }
}

pub fn consent(consent: &Consent<'_>) -> Response {
    // The name is the application's own word (a registration or its metadata document says
    // it); where it sends you back is what we can vouch for, so both are shown.
    let client = match consent.client_name {
        Some(name) if !name.trim().is_empty() => format!(
            "<strong>{}</strong> <span class=\"muted\">(the name it gives itself)</span>",
            escape(name)
        ),
        _ => "An application that did not give its name".to_owned(),
    };
    let scopes: String = consent
        .scopes
        .iter()
        .map(|s| {
            format!(
                "<li>{} <span class=\"muted\">(<code>{}</code>)</span></li>",
                scope_words(s),
                escape(s)
            )
        })
        .collect();
    let hidden: String = consent
        .hidden
        .iter()
        .map(|(name, value)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                escape(name),
                escape(value)
            )
        })
        .collect();
    let body = format!(
        "<h1>Allow access to {server}?</h1>\
         <p>{client} wants to sign you in to <strong>{server}</strong> and:</p><ul>{scopes}</ul>\
         <p class=\"muted\">For <code>{resource}</code>. After you allow it, you sign in with \
         {provider}, then return to <code>{host}</code>. Client id: <code>{client_id}</code>.</p>\
         <p class=\"muted\">Only allow applications you started yourself.</p>\
         <form method=\"post\" action=\"{action}\">{hidden}<div class=\"actions\">\
         <button class=\"allow\" type=\"submit\" name=\"decision\" value=\"allow\">Allow</button>\
         <button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></div></form>",
        server = escape(consent.server_name),
        provider = escape(consent.provider_name),
        host = escape(consent.redirect_host),
        resource = escape(consent.resource),
        client_id = escape(consent.client_id),
        action = escape(consent.action),
    );
    page(
        StatusCode::OK,
        &format!("Allow access to {}", consent.server_name),
        &body,
    )
}

/// A sign-in that cannot go back to the client: what happened and what to do.
pub fn refusal(status: StatusCode, title: &str, message: &str) -> Response {
    page(
        status,
        title,
        &format!(
            "<h1>{}</h1><p>{}</p><p class=\"muted\">You can close this window.</p>",
            escape(title),
            escape(message)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_names_is_text() {
        assert_eq!(
            escape("<script>\"x\"&'y'</script>"),
            "&lt;script&gt;&quot;x&quot;&amp;&#39;y&#39;&lt;/script&gt;"
        );
        let response = consent(&Consent {
            server_name: "Acme <b>",
            client_name: Some("<img src=x onerror=alert(1)>"),
            client_id: "c",
            redirect_host: "127.0.0.1",
            resource: "http://a/s/acme/mcp",
            scopes: &["mcp".into()],
            provider_name: "Okta",
            action: "http://a/oauth/authorize",
            hidden: &[("state".into(), "\"><script>".into())],
        });
        assert_eq!(response.headers()[header::X_FRAME_OPTIONS], "DENY");
        assert!(response.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap_or_default()
            .contains("frame-ancestors 'none'"));
    }
}
