//! The layering of `src/` holds: each folder imports only the folders its layer may see
//! (docs/architecture.md, "Layout"). Codec and packets at the bottom, sans-IO logic above them,
//! the runtime edges (daemon/, control/) on top; a lower folder importing a higher one fails
//! this test with file:line.
//!
//! No OVS needed: it reads the source. It scans `use crate::X`, `crate::X::` and
//! `crate::{X, ..}` in non-test code (a file's `#[cfg(test)] mod` to its end, `tests.rs`,
//! `*_tests.rs` and `testutil` files are test code: tests may reach up, e.g. for a parsed
//! configuration or OVS's encoder). The sans-IO folders must also not name a runtime crate
//! (tokio, glommio, tonic, hyper) outside the files listed as their transports.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Top-level modules of the library (`src/X/` or `src/X.rs`) and what each may import
/// (besides itself). A module missing here fails the test: a new folder states its layer.
const RULES: &[(&str, &[&str])] = &[
    // -- bottom: codec and packets
    ("packet", &[]),
    ("openflow", &["packet"]),
    ("ovsdb", &[]),
    // -- sans-IO logic (time and bytes passed in)
    ("node", &["ovsdb", "packet"]),
    ("pipeline", &["openflow", "packet", "node"]),
    ("policy", &["openflow", "packet", "pipeline", "node"]),
    ("tracker", &["openflow", "packet", "policy", "pipeline"]),
    ("offload", &["openflow", "packet", "pipeline"]),
    // -- configuration: read by the edges, describes the logic's settings
    ("config", &["openflow", "packet", "ovsdb", "node", "pipeline", "policy", "offload", "tracker"]),
    // -- runtime edges
    ("control", &["openflow", "packet", "ovsdb", "node", "pipeline", "policy", "offload", "tracker", "config"]),
    (
        "daemon",
        &["openflow", "packet", "ovsdb", "node", "pipeline", "policy", "offload", "tracker", "config", "control"],
    ),
    // -- the CNI plugin's logic (a separate, short-lived executable: netlink, namespaces, OVSDB)
    ("cni", &["packet", "ovsdb", "node"]),
    // -- tools: the fuzz targets' entry points and OVS's encoder as a test oracle; nothing but
    //    tests may import them
    (
        "fuzzing",
        &["openflow", "packet", "ovsdb", "node", "pipeline", "policy", "offload", "tracker", "config", "control"],
    ),
    ("oracle", &["openflow", "packet"]),
];

/// Runtime crates a sans-IO folder must not name (outside its transport files below).
const RUNTIME_CRATES: &[&str] = &["tokio::", "glommio::", "tonic::", "hyper::", "hyper_util::"];

/// The sans-IO folders, checked for runtime crates.
const SANS_IO: &[&str] = &["packet", "openflow", "ovsdb", "node", "pipeline", "policy", "tracker", "offload"];

/// Files inside a sans-IO folder that are its IO transport on purpose (relative to src/).
/// ovsdb/client.rs is the tokio transport under the sans-IO OVSDB framing, session and cache.
const TRANSPORTS: &[&str] = &["ovsdb/client.rs"];

/// Violations known on this branch, each fixed by a named part of issue 10 (other branches,
/// merged by the lead): (file under src/, what it must stop naming, who fixes it). They are
/// printed, not failed; an entry that no longer matches anything fails the test, so the list
/// only shrinks: remove an entry once its fix is merged.
const PENDING: &[(&str, &str, &str)] = &[];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file of src/ belongs to (`pipeline` for src/pipeline/default.rs and
/// src/pipeline.rs), None for lib.rs and main.rs.
fn module_of(rel: &Path) -> Option<String> {
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    if rel.components().count() > 1 {
        return Some(first);
    }
    let stem = first.strip_suffix(".rs")?;
    (stem != "lib" && stem != "main").then(|| stem.to_string())
}

fn is_test_file(rel: &Path) -> bool {
    let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name == "tests.rs" || name.ends_with("_tests.rs") || name.contains("testutil")
}

/// The top-level modules a line names through `crate::`: `crate::a::..`, `crate::{a::.., b}`.
fn crate_refs(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("crate::") {
        // `shardflow_crate::` or `$crate::` are not ours.
        let before = rest[..i].chars().next_back();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if !name.is_empty() {
                    out.push(name);
                }
            }
        } else {
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                out.push(name);
            }
        }
    }
    out
}

struct Line<'a> {
    no: usize,
    text: &'a str,
}

/// The non-test code lines of a file: comments dropped, stopping at `#[cfg(test)]` followed by
/// a `mod` (the test module sits at a file's end here).
fn code_lines(text: &str) -> Vec<Line<'_>> {
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut skip_next = false;
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim_start();
        if skip_next {
            // Skip the attributes, then the one item they apply to.
            skip_next = t.starts_with("#[");
            continue;
        }
        if t.starts_with("#[cfg(test)]") {
            // The item it applies to: the next line that is not another attribute.
            let next = lines[i + 1..].iter().map(|n| n.trim_start()).find(|n| !n.starts_with("#[")).unwrap_or("");
            if next.starts_with("mod ") || next.starts_with("pub mod ") || next.starts_with("pub(crate) mod ") {
                if next.ends_with(';') {
                    continue; // `#[cfg(test)] mod tests;` points at a test file: skip that line only
                }
                break;
            }
            // `#[cfg(test)]` on one item (a `use`, a helper): that item is test code.
            if next.starts_with("use ") || next.starts_with("pub use ") || next.ends_with(';') {
                skip_next = true;
            }
            continue;
        }
        if t.starts_with("//") {
            continue;
        }
        let code = match t.find("//") {
            Some(c) => &t[..c],
            None => t,
        };
        out.push(Line { no: i + 1, text: code });
    }
    out
}

fn rule(module: &str) -> Option<&'static [&'static str]> {
    RULES.iter().find(|(m, _)| *m == module).map(|(_, allowed)| *allowed)
}

#[test]
fn lower_layers_do_not_import_higher_ones() {
    let root = src();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(files.len() > 50, "found only {} files under {}", files.len(), root.display());
    let mut modules = BTreeSet::new();
    let mut violations: Vec<(String, String, String)> = Vec::new();
    for path in &files {
        let rel = path.strip_prefix(&root).expect("under src").to_path_buf();
        let Some(module) = module_of(&rel) else { continue };
        if module == "cli" || module == "bin" {
            continue; // the binaries and their commands: the top, may import anything of the library
        }
        modules.insert(module.clone());
        let allowed = rule(&module).unwrap_or_else(|| {
            panic!("src/{}: module `{module}` has no layer in RULES (tests/layering.rs)", rel.display())
        });
        if is_test_file(&rel) {
            continue;
        }
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let rel_str = rel.to_string_lossy().replace('\\', "/");
        for line in code_lines(&text) {
            for target in crate_refs(line.text) {
                if target == module || target == "self" || target == "super" {
                    continue;
                }
                if !allowed.contains(&target.as_str()) {
                    let msg = format!("src/{rel_str}:{}: {module} imports {target}: {}", line.no, line.text.trim());
                    violations.push((rel_str.clone(), target.clone(), msg));
                }
            }
            if SANS_IO.contains(&module.as_str()) && !TRANSPORTS.contains(&rel_str.as_str()) {
                for c in RUNTIME_CRATES {
                    let hit = line.text.match_indices(c).any(|(i, _)| {
                        !line.text[..i].chars().next_back().is_some_and(|p| p.is_alphanumeric() || p == '_')
                    });
                    if hit {
                        let krate = c.trim_end_matches(':').to_string();
                        let msg =
                            format!("src/{rel_str}:{}: sans-IO {module} names {krate}: {}", line.no, line.text.trim());
                        violations.push((rel_str.clone(), krate, msg));
                    }
                }
            }
        }
    }
    for (m, _) in RULES {
        assert!(modules.contains(*m), "RULES names `{m}`, which is no module of src/ any more");
    }
    let pending = |file: &str, what: &str| PENDING.iter().find(|(f, w, _)| *f == file && *w == what);
    let mut failures = Vec::new();
    for (file, what, msg) in &violations {
        match pending(file, what) {
            Some((_, _, who)) => eprintln!("pending ({who}): {msg}"),
            None => failures.push(msg.as_str()),
        }
    }
    let stale: Vec<String> = PENDING
        .iter()
        .filter(|(f, w, _)| !violations.iter().any(|(file, what, _)| file == f && what == w))
        .map(|(f, w, who)| format!("src/{f} no longer names {w} ({who}): remove it from PENDING"))
        .collect();
    assert!(
        failures.is_empty(),
        "{} uses against the layering (rules: RULES and RUNTIME_CRATES in tests/layering.rs, docs/architecture.md \"Layout\"):\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
    assert!(stale.is_empty(), "stale PENDING entries in tests/layering.rs:\n  {}", stale.join("\n  "));
}

/// The scanner itself: a violation it must see, and test code it must not count.
#[test]
fn the_scanner_sees_imports_and_skips_test_code() {
    assert_eq!(crate_refs("use crate::control::api::Dpid;"), vec!["control"]);
    assert_eq!(crate_refs("use crate::{config::Mode, node};"), vec!["config", "node"]);
    assert_eq!(crate_refs("let x = crate::policy::decide(a, crate::packet::Key::new());"), vec!["policy", "packet"]);
    assert!(crate_refs("$crate::x; my_crate::y").is_empty());
    let text = "use crate::openflow::Message;\n// use crate::daemon::x;\nfn f() {}\n#[cfg(test)]\n#[allow(clippy::unwrap_used)]\nmod tests {\n    use crate::config::Config;\n}\n";
    let lines = code_lines(text);
    let refs: Vec<String> = lines.iter().flat_map(|l| crate_refs(l.text)).collect();
    assert_eq!(refs, vec!["openflow"], "comments and the test module are skipped");
    assert_eq!(lines[0].no, 1);
    assert_eq!(module_of(Path::new("pipeline/default/config.rs")).as_deref(), Some("pipeline"));
    assert_eq!(module_of(Path::new("config.rs")).as_deref(), Some("config"));
    assert_eq!(module_of(Path::new("lib.rs")), None);
}
