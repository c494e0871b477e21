//! The rooms keep their doors: no circle among the handler's modules, the store reaches for no
//! adapter or entry point, and no file grows past what one sitting reads. Read from the source
//! tree, so a change that breaks a rule fails here, not in a review.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Production lines a file may hold (its `#[cfg(test)] mod tests` block and test-only files apart).
const MAX_PRODUCTION_LINES: usize = 600;

fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            source_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Test-only files: a `tests` directory or a `*tests.rs` / `test_*.rs` file.
fn is_test_file(relative: &Path) -> bool {
    let name = relative.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    relative.components().any(|c| c.as_os_str() == "tests") || name.ends_with("tests.rs") || name.starts_with("test_")
}

/// The production part of a file: everything before its inline test module.
fn production(text: &str) -> &str {
    text.find("#[cfg(test)]\nmod tests").map_or(text, |at| &text[..at])
}

/// The top-level module a file belongs to (`reconcile/act.rs` -> `reconcile`).
fn room(relative: &Path) -> String {
    let first = relative.components().next().unwrap().as_os_str().to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// The top-level modules named after `crate::` (also inside `use crate::{a, b::c}`).
fn rooms_named(text: &str) -> BTreeSet<String> {
    let ident = |s: &str| {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect::<String>()
    };
    let mut named = BTreeSet::new();
    for (at, _) in text.match_indices("crate::") {
        let rest = &text[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            named.extend(
                group
                    .split(',')
                    .map(|part| ident(part.trim()))
                    .filter(|s| !s.is_empty()),
            );
        } else {
            named.insert(ident(rest));
        }
    }
    named
}

/// Who depends on whom, production code only; `main` and test files left out.
fn dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let root = src();
    let mut files = Vec::new();
    source_files(&root, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(&root).unwrap().to_path_buf();
        let from = room(&relative);
        if from == "main" || is_test_file(&relative) {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let to = rooms_named(production(&text));
        graph
            .entry(from.clone())
            .or_default()
            .extend(to.into_iter().filter(|t| *t != from));
    }
    graph
}

/// A path back to `start` through `graph`, if there is one.
fn circle_through(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_string(), vec![start.to_string()])];
    let mut seen = BTreeSet::new();
    while let Some((at, path)) = stack.pop() {
        for next in graph.get(&at).into_iter().flatten() {
            if next == start {
                return Some([path.clone(), vec![start.to_string()]].concat());
            }
            if seen.insert(next.clone()) {
                stack.push((next.clone(), [path.clone(), vec![next.clone()]].concat()));
            }
        }
    }
    None
}

#[test]
fn no_module_of_the_handler_depends_on_itself_through_others() {
    let graph = dependencies();
    assert!(graph.len() > 10, "the source tree was read: {graph:?}");
    let circles: Vec<String> = graph
        .keys()
        .filter_map(|m| circle_through(&graph, m))
        .map(|path| path.join(" -> "))
        .collect();
    assert!(circles.is_empty(), "module circles: {circles:#?}");
}

#[test]
fn the_store_reaches_for_no_adapter_and_no_entry_point() {
    let graph = dependencies();
    let store = &graph["store"];
    for forbidden in [
        "arm",
        "keyvault",
        "reconcile",
        "alerting",
        "sweep",
        "http",
        "cli",
        "outbox",
    ] {
        assert!(
            !store.contains(forbidden),
            "store imports crate::{forbidden}: {store:?}"
        );
    }
}

#[test]
fn the_circle_finder_finds_a_circle() {
    let graph: BTreeMap<String, BTreeSet<String>> =
        [("a", vec!["b"]), ("b", vec!["c"]), ("c", vec!["a"]), ("d", vec!["a"])]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.into_iter().map(str::to_string).collect()))
            .collect();
    assert_eq!(circle_through(&graph, "a").unwrap(), ["a", "b", "c", "a"]);
    assert!(circle_through(&graph, "d").is_none());
    assert_eq!(
        rooms_named("use crate::{audit, sweep::Scope};\nuse crate::store::X;"),
        ["audit", "store", "sweep"].into_iter().map(str::to_string).collect()
    );
}

#[test]
fn no_handler_file_is_longer_than_one_sitting() {
    let root = src();
    let mut files = Vec::new();
    source_files(&root, &mut files);
    let long: Vec<String> = files
        .iter()
        .filter_map(|file| {
            let relative = file.strip_prefix(&root).unwrap();
            let text = std::fs::read_to_string(file).unwrap();
            let lines = if is_test_file(relative) {
                0
            } else {
                production(&text).lines().count()
            };
            (lines > MAX_PRODUCTION_LINES).then(|| format!("{} ({lines})", relative.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "over {MAX_PRODUCTION_LINES} production lines: {long:?}"
    );
}
