//! Conventions of the source the compiler cannot check, checked by reading it (as
//! rust-analyzer's `tidy` does).

use std::fs;
use std::path::{Path, PathBuf};

/// The `.rs` files under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source of every crate of the workspace (tests and tools apart).
fn sources() -> Vec<PathBuf> {
    let root = crate::root();
    let mut files = Vec::new();
    for krate in [
        "domain",
        "eventstore",
        "commands",
        "projections",
        "api",
        "mcp",
        "",
    ] {
        rust_files(&root.join(krate).join("src"), &mut files);
    }
    files.retain(|f| !f.components().any(|c| c.as_os_str() == "bin"));
    files
}

/// A field of a struct or of an enum variant (`name: Type,`), not an attribute's argument
/// (`with = "…",`) nor a doc line.
fn is_field(line: &str) -> bool {
    let line = line.trim();
    if line.starts_with(['#', '/', ')']) || !line.ends_with(',') {
        return false;
    }
    match (line.find(": "), line.find('=')) {
        (Some(colon), Some(equals)) => colon < equals,
        (Some(_), None) => true,
        _ => false,
    }
}

/// A field of type `DateTime<Utc>` or `Option<DateTime<Utc>>`.
fn is_instant_field(line: &str) -> bool {
    let Some((name, ty)) = line.trim().split_once(": ") else {
        return false;
    };
    let name = name
        .trim_start_matches("pub ")
        .trim_start_matches("pub(crate) ");
    let ty = ty.trim_end_matches(',').replace("chrono::", "");
    name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && (ty == "DateTime<Utc>" || ty == "Option<DateTime<Utc>>")
}

/// Every instant that is serialized is written one way (`domain::time`: RFC 3339, UTC, six
/// fractional digits). chrono's own `Serialize` writes as many digits as the value needs (none
/// for a whole second), so a field that forgot the helper is right most of the time and a test
/// of answers rarely sees it: this looks at the fields themselves.
#[test]
fn every_serialized_instant_is_written_by_the_shared_helper() {
    let mut offenders = Vec::new();
    let mut checked = 0;
    for file in sources() {
        let Ok(text) = fs::read_to_string(&file) else {
            continue;
        };
        let lines: Vec<&str> = text.lines().collect();
        let mut serialized = false;
        let mut derive_serialize = false;
        for (i, line) in lines.iter().enumerate() {
            if line.trim_start().starts_with("#[derive(") {
                // A derive may span lines: read up to its closing `)]`.
                let derive: String = lines[i..]
                    .iter()
                    .take_while(|l| !l.contains(")]"))
                    .chain(lines[i..].iter().find(|l| l.contains(")]")))
                    .copied()
                    .collect();
                derive_serialize = derive.contains("Serialize");
            }
            let item = line.trim_start();
            if item.starts_with("pub struct ")
                || item.starts_with("struct ")
                || item.starts_with("pub enum ")
                || item.starts_with("enum ")
                || item.starts_with("pub(crate) struct ")
            {
                serialized = derive_serialize && line.trim_end().ends_with('{');
                derive_serialize = false;
                continue;
            }
            if serialized && line.starts_with('}') {
                serialized = false;
            }
            if !(serialized && is_instant_field(line)) {
                continue;
            }
            checked += 1;
            // The field's attributes and docs: the lines above it, back to the previous field
            // or the item's opening.
            let attributes: String = lines[..i]
                .iter()
                .rev()
                .take_while(|l| !(is_field(l) || l.trim_end().ends_with('{')))
                .copied()
                .collect();
            if !(attributes.contains("rfc3339") || attributes.contains("serde(skip")) {
                offenders.push(format!("{}:{}: {}", file.display(), i + 1, line.trim()));
            }
        }
    }
    assert!(checked > 30, "only {checked} serialized instants found");
    assert!(
        offenders.is_empty(),
        "serialize these with `#[serde(with = \"domain::time::rfc3339\")]` (or \
         `rfc3339_option`):\n{}",
        offenders.join("\n")
    );
}
