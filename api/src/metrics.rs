//! Prometheus text exposition. A handful of counters and gauges does not justify a metrics
//! registry crate; the format is four lines of code.

use crate::state::AppState;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// HTTP responses by status class (1xx..5xx).
static RESPONSES: [AtomicU64; 5] = [
    AtomicU64::new(0),
    AtomicU64::new(0),
    AtomicU64::new(0),
    AtomicU64::new(0),
    AtomicU64::new(0),
];

pub fn record_response(status: u16) {
    let class = (status / 100).clamp(1, 5) as usize - 1;
    RESPONSES[class].fetch_add(1, Ordering::Relaxed);
}

pub async fn render(state: &AppState) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# TYPE mcplatform_http_responses_total counter");
    for (i, counter) in RESPONSES.iter().enumerate() {
        let _ = writeln!(
            out,
            "mcplatform_http_responses_total{{class=\"{}xx\"}} {}",
            i + 1,
            counter.load(Ordering::Relaxed)
        );
    }
    if let Ok(head) = state.store.head().await {
        let _ = writeln!(out, "# TYPE mcplatform_event_store_head_position gauge");
        let _ = writeln!(
            out,
            "mcplatform_event_store_head_position {}",
            head.global_position
        );
    }
    let rows = projections::checkpoint::positions(&state.pool).await;
    if let Ok(rows) = rows {
        let _ = writeln!(
            out,
            "# TYPE mcplatform_projection_checkpoint_position gauge"
        );
        for (name, position) in rows {
            let _ = writeln!(
                out,
                "mcplatform_projection_checkpoint_position{{projection=\"{name}\"}} {position}"
            );
        }
    }
    out
}
