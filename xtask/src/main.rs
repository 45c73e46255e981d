//! Repository tasks, run as `cargo xtask <task>` (an alias in `.cargo/config.toml`).
//!
//! `cargo xtask test` runs everything a change must pass, on a fresh machine too: it installs
//! the test clients and cargo-nextest if they are missing, checks that Postgres and NATS answer
//! on 127.0.0.1, runs the unit, middle-tier and end-to-end tests (`cargo nextest run
//! --workspace --profile ci`), then the official MCP conformance suite against the binary that
//! build made. It exits non-zero if anything failed, after running everything it could.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

#[cfg(test)]
mod tidy;

const USAGE: &str = "usage: cargo xtask test

  test   install what the tests need if missing (test clients, cargo-nextest), check that
         Postgres (127.0.0.1:5432) and NATS with JetStream (127.0.0.1:4222) answer, run every
         test (cargo nextest run --workspace --profile ci), then the MCP conformance suite";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("test") if args.len() == 1 => test(),
        Some("help" | "-h" | "--help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// The workspace root: this crate's parent folder.
fn root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The cargo that runs us (so a toolchain chosen by rustup is kept), else the one on PATH.
fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

fn step(title: &str) {
    println!("\n==> {title}");
}

/// Runs a command with our stdout and stderr; whether it succeeded.
fn run(what: &str, cmd: &mut Command) -> bool {
    match cmd.status() {
        Ok(status) if status.success() => true,
        Ok(status) => {
            eprintln!("xtask: {what} failed ({status})");
            false
        }
        Err(e) => {
            eprintln!("xtask: cannot run {what}: {e}");
            false
        }
    }
}

fn answers(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
}

/// Both services the tests talk to, or a message saying how to start the missing ones.
fn services_answer() -> bool {
    let mut ok = true;
    if answers(5432) {
        println!("PostgreSQL answers on 127.0.0.1:5432");
    } else {
        ok = false;
        eprintln!(
            "xtask: PostgreSQL does not answer on 127.0.0.1:5432. The tests need it there, with \
             user postgres and trust (or password-less) authentication. Start it with one of:\n  \
             pg_ctlcluster <version> main start      (Debian; `ls /etc/postgresql` shows the version)\n  \
             docker compose up -d postgres           (from this repository)"
        );
    }
    if answers(4222) {
        println!("NATS answers on 127.0.0.1:4222");
    } else {
        ok = false;
        eprintln!(
            "xtask: NATS does not answer on 127.0.0.1:4222. The tests need it there, with \
             JetStream. Start it with one of:\n  \
             nats-server -a 127.0.0.1 -p 4222 -js -sd /tmp/nats &\n  \
             docker compose up -d nats               (from this repository)"
        );
    }
    ok
}

fn nextest_installed() -> bool {
    cargo()
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Where the `ci` profile writes its JUnit report.
fn junit_report() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    target.join("nextest/ci/junit.xml")
}

/// `(tests, failed)` of the last run, from the JUnit report the `ci` profile writes.
fn nextest_counts() -> Option<(u64, u64)> {
    let report = std::fs::read_to_string(junit_report()).ok()?;
    let start = report.find("<testsuites")?;
    let tag = &report[start..start + report[start..].find('>')?];
    let attr = |name: &str| -> Option<u64> {
        let key = format!(" {name}=\"");
        let from = tag.find(&key)? + key.len();
        tag[from..from + tag[from..].find('"')?].parse().ok()
    };
    Some((
        attr("tests")?,
        attr("failures")? + attr("errors").unwrap_or(0),
    ))
}

fn minutes(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}m{:02}s", s / 60, s % 60)
}

fn test() -> ExitCode {
    let started = Instant::now();
    let mut failures: Vec<&str> = Vec::new();

    step("services");
    if !services_answer() {
        return ExitCode::FAILURE;
    }

    step("test clients (Python MCP SDK, Node, MCP conformance suite) into .tools/");
    if !run(
        "scripts/setup-test-clients.sh",
        Command::new("bash")
            .arg("scripts/setup-test-clients.sh")
            .current_dir(root()),
    ) {
        return ExitCode::FAILURE;
    }

    step("cargo-nextest");
    if nextest_installed() {
        println!("cargo-nextest is installed");
    } else {
        println!("installing cargo-nextest (cargo install cargo-nextest --locked)");
        if !run(
            "cargo install cargo-nextest",
            cargo().args(["install", "cargo-nextest", "--locked"]),
        ) {
            return ExitCode::FAILURE;
        }
    }

    step("unit, middle-tier and end-to-end tests: cargo nextest run --workspace --profile ci");
    let tests_started = Instant::now();
    let _ = std::fs::remove_file(junit_report());
    let tests_ok = run(
        "cargo nextest run",
        cargo().args(["nextest", "run", "--workspace", "--profile", "ci"]),
    );
    if !tests_ok {
        failures.push("cargo nextest run");
    }
    let tests_took = tests_started.elapsed();

    step("MCP conformance suite against a built binary: scripts/conformance.sh");
    let conformance_started = Instant::now();
    // The binary as the tests built it: `cargo build --bin mcplatform` alone would resolve
    // features without the dev-dependencies and rebuild half the tree (minutes on 2 cores);
    // this is the test build itself, already fresh, and it leaves target/debug/mcplatform.
    let conformance_ok = run(
        "cargo build --workspace --tests",
        cargo().args(["build", "--workspace", "--tests"]),
    ) && run(
        "scripts/conformance.sh",
        Command::new("bash")
            .arg("scripts/conformance.sh")
            .current_dir(root()),
    );
    if !conformance_ok {
        failures.push("the MCP conformance suite");
    }
    let conformance_took = conformance_started.elapsed();

    step("summary");
    let (tests, failed) = nextest_counts().unwrap_or((0, u64::from(!tests_ok)));
    println!(
        "nextest: {} of {tests} tests passed in {}; conformance suite {} in {}; all in {}",
        tests - failed.min(tests),
        minutes(tests_took),
        if conformance_ok { "passed" } else { "FAILED" },
        minutes(conformance_took),
        minutes(started.elapsed()),
    );
    // One plain closing line for whoever reads the log: the conformance suite counts as one.
    let passed = tests - failed.min(tests) + u64::from(conformance_ok);
    let failed = failed + u64::from(!conformance_ok);
    println!("total: {passed} passed, {failed} failed");
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("xtask: failed: {}", failures.join(", "));
        ExitCode::FAILURE
    }
}
