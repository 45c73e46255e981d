//! The OpenAPI document. Its paths come from the routes themselves (`crate::routes`, where each
//! route is declared once, with its `#[utoipa::path]`); its description, license, security
//! scheme and error catalogue from here. Served at `/api/v1/openapi.json`.

use crate::error::{self, ErrorCode};
use std::sync::LazyLock;
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{InfoBuilder, LicenseBuilder, OpenApi, RefOr};
use utoipa::OpenApi as _;

pub use crate::error::{FieldError, Problem};

#[derive(utoipa::OpenApi)]
#[openapi(components(schemas(Problem, FieldError)))]
struct Components;

/// Everything of the document but its paths, which the router adds as it declares them.
pub fn base() -> OpenApi {
    let mut doc = Components::openapi();
    doc.info = InfoBuilder::new()
        .title("mcplatform API")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(include_str!("openapi.md")))
        .license(Some(
            LicenseBuilder::new()
                .name("Apache-2.0")
                .identifier(Some("Apache-2.0"))
                .build(),
        ))
        .build();
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
    );
    components
        .schemas
        .insert("ErrorCode".to_owned(), RefOr::T(error_codes()));
    doc
}

/// The catalogue: one entry per code, with its status (also as `x-status`) and meaning.
fn error_codes() -> Schema {
    let entries = ErrorCode::all().iter().map(|&code| {
        let status = error::status(code.kind());
        ObjectBuilder::new()
            .schema_type(Type::String)
            .title(Some(code.as_str()))
            .enum_values(Some([code.as_str()]))
            .description(Some(format!(
                "{} {}. {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or_default(),
                code.description()
            )))
            .extensions(Some(
                Extensions::builder()
                    .add("x-status", status.as_u16())
                    .build(),
            ))
    });
    let mut catalogue = OneOfBuilder::new().description(Some(
        "Every `code` a problem can carry, with its HTTP status and meaning. A problem's `type` \
         is `/problems/{code}`, a page describing the code.",
    ));
    for entry in entries {
        catalogue = catalogue.item(entry);
    }
    catalogue.build().into()
}

/// The document, built once from the routes.
pub fn document() -> &'static OpenApi {
    static DOCUMENT: LazyLock<OpenApi> = LazyLock::new(|| crate::routes().into_openapi());
    &DOCUMENT
}

#[utoipa::path(operation_id = "openapi_document", get, path = "/api/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "This document (OpenAPI 3.1)", body = Object)))]
pub async fn serve() -> axum::Json<&'static OpenApi> {
    axum::Json(document())
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::openapi::path::Operation;

    fn operations(doc: &OpenApi) -> Vec<(String, &str, &Operation)> {
        let mut all = Vec::new();
        for (path, item) in &doc.paths.paths {
            for (method, op) in [
                ("get", &item.get),
                ("post", &item.post),
                ("put", &item.put),
                ("patch", &item.patch),
                ("delete", &item.delete),
            ] {
                if let Some(op) = op {
                    all.push((path.clone(), method, op));
                }
            }
        }
        all
    }

    #[test]
    fn every_success_answer_has_a_schema() {
        let doc = document();
        let operations = operations(doc);
        assert!(operations.len() > 50, "{} operations", operations.len());
        for (path, method, op) in operations {
            let mut successes = 0;
            for (status, response) in &op.responses.responses {
                if !status.starts_with('2') {
                    continue;
                }
                successes += 1;
                let RefOr::T(response) = response else {
                    continue;
                };
                if status == "204" {
                    assert!(
                        response.content.is_empty(),
                        "{method} {path}: 204 has no body"
                    );
                    continue;
                }
                assert!(
                    !response.content.is_empty(),
                    "{method} {path}: {status} has no content"
                );
                for (media, content) in &response.content {
                    assert!(
                        content.schema.is_some(),
                        "{method} {path}: {status} {media} has no schema"
                    );
                }
            }
            assert!(successes > 0, "{method} {path}: no success answer");
        }
    }

    /// Every property of every schema in the document, by name, with where it is.
    fn properties(
        at: &str,
        schema: &serde_json::Value,
        out: &mut Vec<(String, String, serde_json::Value)>,
    ) {
        match schema {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::Object(props)) = map.get("properties") {
                    for (name, prop) in props {
                        out.push((at.to_owned(), name.clone(), prop.clone()));
                    }
                }
                for (key, value) in map {
                    properties(&format!("{at}.{key}"), value, out);
                }
            }
            serde_json::Value::Array(items) => {
                for (i, value) in items.iter().enumerate() {
                    properties(&format!("{at}[{i}]"), value, out);
                }
            }
            _ => {}
        }
    }

    /// Names say what a field holds: an instant ends in `_at` (but the echoed `from`/`to` of a
    /// range and a bucket's label), anything ending in `_at` is an instant, and a duration is
    /// a number of milliseconds (`_ms`), never seconds.
    #[test]
    fn instants_end_in_at_and_durations_are_milliseconds_as_numbers() {
        let json = serde_json::to_value(document()).unwrap();
        let mut all = Vec::new();
        properties("components", &json["components"], &mut all);
        assert!(all.len() > 100, "{} properties", all.len());
        let is_instant = |prop: &serde_json::Value| prop["format"] == "date-time";
        for (at, name, prop) in &all {
            if is_instant(prop) {
                assert!(
                    name.ends_with("_at") || ["from", "to", "bucket"].contains(&name.as_str()),
                    "{at}: `{name}` holds an instant: name it `*_at`"
                );
            }
            if name.ends_with("_at") {
                assert!(
                    is_instant(prop),
                    "{at}: `{name}` is not a date-time: {prop}"
                );
            }
            if name.ends_with("_ms") {
                let types = prop["type"].to_string();
                assert!(
                    types.contains("number") && !types.contains("integer"),
                    "{at}: `{name}` is a number of milliseconds with decimals: {prop}"
                );
            }
            assert!(
                !name.contains("second"),
                "{at}: `{name}`: durations are in ms"
            );
        }
        // A range bound is documented as the date or the time it accepts.
        let bound = &json["paths"]["/api/v1/orgs/{org}/tool-calls"]["get"]["parameters"];
        let to = bound
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "to")
            .unwrap();
        let formats: Vec<_> = to["schema"]["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["format"].as_str().unwrap())
            .collect();
        assert_eq!(formats, ["date", "date-time"]);
    }

    #[test]
    fn the_catalogue_lists_every_code_with_its_status() {
        let json = serde_json::to_value(document()).unwrap();
        let entries = json["components"]["schemas"]["ErrorCode"]["oneOf"]
            .as_array()
            .unwrap();
        assert_eq!(entries.len(), ErrorCode::all().len());
        let not_found = entries
            .iter()
            .find(|e| e["enum"][0] == "org_not_found")
            .unwrap();
        assert_eq!(not_found["x-status"], 404);
        assert_eq!(
            json["components"]["schemas"]["Problem"]["properties"]["code"]["$ref"],
            "#/components/schemas/ErrorCode"
        );
        assert_eq!(json["info"]["license"]["identifier"], "Apache-2.0");
    }
}
