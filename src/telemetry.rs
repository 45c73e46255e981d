//! One place that sets up logging: an `EnvFilter` with a sensible default (override with
//! `RUST_LOG`), text or JSON lines on stderr.

use std::io::IsTerminal;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::LogFormat;

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,async_nats=warn,rmcp=error"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal: redirected to a file or a log collector,
        // the escape codes would be noise in every line.
        .with_ansi(std::io::stderr().is_terminal());
    if format == LogFormat::Json {
        builder.json().finish().with(ClientGone).init();
    } else {
        builder.finish().with(ClientGone).init();
    }
}

/// rmcp logs at ERROR when it cannot hand over an answer because the client went away: a
/// stateless request's client that disconnected mid-response, a session closed with calls still
/// running. That is no fault of the server (a benchmark produced hundreds of such lines), so
/// that one event is logged at DEBUG instead, under the same target; every other rmcp error
/// stays visible. (A filter directive cannot single it out: directives select by target, span
/// and level, and rmcp's other errors share its target and level.)
struct ClientGone;

/// rmcp's message when the transport refused an answer while draining (`rmcp::service`).
const CLIENT_GONE_MESSAGE: &str = "failed to send pending response during drain";

#[derive(Default)]
struct Fields {
    message: Option<String>,
    error: Option<String>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = Some(format!("{value:?}")),
            "error" => self.error = Some(format!("{value:?}")),
            _ => {}
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = Some(value.to_owned()),
            "error" => self.error = Some(value.to_owned()),
            _ => {}
        }
    }
}

impl<S: Subscriber> Layer<S> for ClientGone {
    fn event_enabled(&self, event: &Event<'_>, _: Context<'_, S>) -> bool {
        let metadata = event.metadata();
        if *metadata.level() != Level::ERROR || metadata.target() != "rmcp::service" {
            return true;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        if fields.message.as_deref() != Some(CLIENT_GONE_MESSAGE) {
            return true;
        }
        tracing::debug!(
            target: "rmcp::service",
            error = fields.error.as_deref().unwrap_or_default(),
            "a client went away before its answer was sent ({CLIENT_GONE_MESSAGE})"
        );
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// The lines logged, captured.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A client gone is a DEBUG line (when asked for), any other rmcp error stays an ERROR.
    /// (The global subscriber, as in the server: nextest runs each test in its own process.)
    #[test]
    fn a_client_gone_is_logged_at_debug_and_real_rmcp_errors_stay_errors() {
        let captured = Captured::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .with_env_filter(EnvFilter::new("info,rmcp=debug"))
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish()
            .with(ClientGone)
            .init();
        tracing::error!(target: "rmcp::service", error = "channel closed", "failed to send pending response during drain");
        tracing::error!(target: "rmcp::service", error = "boom", "fail to close sink");
        let text = String::from_utf8(captured.0.lock().map(|b| b.clone()).unwrap_or_default())
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].contains("DEBUG") && lines[0].contains("a client went away"),
            "{text}"
        );
        assert!(lines[0].contains("channel closed"), "{text}");
        assert!(
            lines[1].contains("ERROR") && lines[1].contains("fail to close sink"),
            "{text}"
        );
    }
}
