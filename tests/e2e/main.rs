//! End-to-end tests: the real `mcplatform` binary against the real Postgres and NATS on
//! 127.0.0.1. Each test gets its own database and its own NATS prefix (so its own stream), and
//! removes both when it ends. One test binary keeps link time down.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod helpers;
mod mcp_raw;

mod api_auth;
mod api_dashboard_audit;
mod api_errors;
mod api_events;
mod api_invitations;
mod api_isolation;
mod api_json;
mod api_orgs;
mod api_servers;
mod audit_log;
mod cli;
mod event_store;
mod faults;
mod hostile_inputs;
mod identity_providers;
mod identity_stitching;
mod limits;
mod live_streams;
mod mcp_clients;
mod mcp_protocol;
mod mcp_refusals;
mod mcp_tickets;
mod oauth_tokens;
mod oidc;
mod openapi;
mod openapi_routes;
mod projections;
mod request_ids_and_metrics;
mod secrets_at_rest;
mod sign_in;
mod signed_tracking;
mod slow_clients;
mod walkthroughs;
