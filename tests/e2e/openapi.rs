//! The OpenAPI document describes every REST route.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use std::collections::HashSet;

#[tokio::test]
async fn the_openapi_document_lists_every_route_with_unique_operation_ids() {
    let app = spawn_app().await;
    let (status, doc) = app
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/api/v1/auth/signup",
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
        "/api/v1/auth/logout",
        "/api/v1/me",
        "/api/v1/orgs",
        "/api/v1/orgs/{org}",
        "/api/v1/orgs/{org}/members",
        "/api/v1/orgs/{org}/members/{member}",
        "/api/v1/orgs/{org}/servers",
        "/api/v1/orgs/{org}/servers/{server}",
        "/api/v1/orgs/{org}/dashboard",
        "/api/v1/orgs/{org}/audit",
        "/api/v1/orgs/{org}/events",
        "/api/v1/orgs/{org}/events/stream",
        "/healthz",
        "/readyz",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} missing from the OpenAPI document"
        );
    }
    let mut ids = HashSet::new();
    for ops in paths.values() {
        for op in ops.as_object().unwrap().values() {
            let id = op["operationId"].as_str().unwrap().to_owned();
            assert!(ids.insert(id.clone()), "duplicate operationId {id}");
        }
    }
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}
