//! Read models: each file holds one projection and the org-scoped queries that read it.

pub mod audit;
pub mod dashboard;
pub mod organizations;
pub mod servers;

/// A page of results and the cursor of the next page, if there is one.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}
