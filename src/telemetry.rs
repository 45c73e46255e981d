//! One place that sets up logging: an `EnvFilter` with a sensible default (override with
//! `RUST_LOG`), text or JSON lines on stderr.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

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
        builder.json().init();
    } else {
        builder.init();
    }
}
