//! `/problems` and `/problems/{code}`: the pages a problem's `type` names (RFC 9457 wants a
//! `type` URI that a person can follow), written from the error catalogue.

use crate::error::{self, ApiError, ErrorCode, Problem};
use crate::extract::{NoQuery, Path};
use crate::params::ProblemPath;
use axum::response::Html;

#[utoipa::path(operation_id = "problems_index", get, path = "/problems", tag = "meta",
    responses((status = 200, description = "Every error code with its status and meaning", content_type = "text/html", body = String)))]
pub async fn index(_: NoQuery) -> Html<String> {
    let rows: String = ErrorCode::all()
        .iter()
        .map(|&code| {
            let status = error::status(code.kind());
            format!(
                "<tr><td><a href=\"/problems/{code}\"><code>{code}</code></a></td><td>{}</td><td>{}</td></tr>\n",
                status.as_u16(),
                prose(code.description())
            )
        })
        .collect();
    Html(page(
        "mcplatform API error codes",
        &format!(
            "<p>Every error of the mcplatform API is an RFC 9457 problem whose <code>code</code> \
             is one of these, and whose <code>type</code> is the code's page.</p>\n\
             <table>\n<tr><th>code</th><th>status</th><th>meaning</th></tr>\n{rows}</table>"
        ),
    ))
}

#[utoipa::path(operation_id = "problems_page", get, path = "/problems/{code}", tag = "meta",
    params(ProblemPath),
    responses((status = 200, description = "What the code means", content_type = "text/html", body = String), (status = 404, description = "No such code", body = Problem, content_type = "application/problem+json")))]
pub async fn describe(
    _: NoQuery,
    Path(ProblemPath { code }): Path<ProblemPath>,
) -> Result<Html<String>, ApiError> {
    let code = code
        .parse::<ErrorCode>()
        .map_err(|_| ApiError::new(ErrorCode::RouteNotFound, "no such problem type"))?;
    let status = error::status(code.kind());
    Ok(Html(page(
        code.as_str(),
        &format!(
            "<p>HTTP {} {}.</p>\n<p>{}</p>\n<p><a href=\"/problems\">All error codes</a></p>",
            status.as_u16(),
            status.canonical_reason().unwrap_or_default(),
            prose(code.description())
        ),
    )))
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>{title}</title></head>\n\
         <body>\n<h1>{title}</h1>\n{body}\n</body>\n</html>\n"
    )
}

/// A catalogue sentence as HTML: escaped, with its `code spans` set as code.
fn prose(text: &str) -> String {
    let escaped = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    escaped
        .split('`')
        .enumerate()
        .map(|(i, part)| {
            if i % 2 == 1 {
                format!("<code>{part}</code>")
            } else {
                part.to_owned()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::prose;

    #[test]
    fn prose_is_escaped_and_code_spans_are_code() {
        assert_eq!(
            prose("send `Bearer <token>` & retry"),
            "send <code>Bearer &lt;token&gt;</code> &amp; retry"
        );
    }
}
