//! What the machine under the benchmark gave: its CPU time per call, and how fast one of its
//! cores is. The development machines are virtual, and the same build has measured twice the
//! throughput on one as on another; these two figures tell a slower machine from a slower build.

use std::time::Instant;

/// Busy CPU time of the whole machine so far, from `/proc/stat` (every process: the server,
/// Postgres, NATS and the load generator itself). `None` where there is no `/proc/stat`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BusyCpu {
    busy_ticks: u64,
}

impl BusyCpu {
    pub(crate) fn now() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        // cpu  user nice system idle iowait irq softirq steal ...
        let fields: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        let total: u64 = fields.iter().sum();
        let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
        Some(Self {
            busy_ticks: total - idle,
        })
    }

    /// Microseconds of busy CPU per call since `self`, or `None` if unknown.
    pub(crate) fn per_call_since(self, calls: u64) -> Option<f64> {
        let later = Self::now()?;
        if calls == 0 {
            return None;
        }
        // USER_HZ is 100 on every Linux architecture the bench runs on.
        let seconds = later.busy_ticks.saturating_sub(self.busy_ticks) as f64 / 100.0;
        Some(seconds * 1e6 / calls as f64)
    }
}

/// Formats an optional per-call figure for a table column.
pub(crate) fn column(per_call: Option<f64>) -> String {
    per_call.map_or_else(|| "-".to_owned(), |us| format!("{us:.0}"))
}

/// Microseconds one core takes to serialize and parse a step-completion-sized event (best of
/// five rounds, on an otherwise idle machine): a fixed piece of the work a call does, to compare
/// machines by.
pub(crate) fn core_reference_us() -> f64 {
    let event = serde_json::json!({
        "at": "2026-11-24T01:19:44.987616312Z",
        "step_id": "34c125f8-c4a2-4201-a39f-1855fa976b0a",
        "version": 1,
        "server_id": "f289a89b-da34-4427-ab76-3b5c90300af3",
        "step_count": 10,
        "step_index": 0,
        "end_user_id": "17197e53-1804-4624-ac9e-7b8013e05873",
        "next_step_id": "c1ac92fb-f4c7-45f4-9363-c789e9d4d444",
        "walkthrough_id": "c8492ce4-1bce-443f-92da-5b1c81db9df2",
        "time_on_step_ms": 66,
        "previous_step_id": null,
        "metadata": {"actor": {"id": "e98497ec-adc7-4a75-b7e8-cd626c785c46", "kind": "end_user"},
                     "org_id": "dee2fa40-a291-4236-878d-08a765f4ad49", "client_ip": "127.0.0.1"}
    });
    const ROUNDS: usize = 5;
    const PER_ROUND: u32 = 20_000;
    (0..ROUNDS)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..PER_ROUND {
                let text = serde_json::to_vec(std::hint::black_box(&event)).unwrap_or_default();
                let back: serde_json::Value =
                    serde_json::from_slice(std::hint::black_box(&text)).unwrap_or_default();
                std::hint::black_box(back);
            }
            started.elapsed().as_secs_f64() * 1e6 / f64::from(PER_ROUND)
        })
        .fold(f64::INFINITY, f64::min)
}

/// The line a load benchmark starts with.
pub(crate) fn describe() -> String {
    format!(
        "machine: {} cores; one core serializes and parses a 600-byte event in {:.2} µs \
         (lower is a faster core); cpu µs/call below is the whole machine's busy time per call",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        core_reference_us()
    )
}
