//! The shape of the workspace, checked so that it stays as
//! `docs/architecture.md` draws it: inside every crate, no two top-level
//! modules import from each other, directly or round a longer loop (between
//! crates Cargo already forbids cycles).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `path` (or `path` itself).
fn sources(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    let mut out = vec![];
    for entry in std::fs::read_dir(path).unwrap() {
        out.extend(sources(&entry.unwrap().path()));
    }
    out.retain(|p| p.extension().is_some_and(|e| e == "rs"));
    out
}

/// The code of a file without its comments (a doc comment may name a module
/// it does not import).
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines().map(|l| l.split("//").next().unwrap_or_default()).collect::<Vec<_>>().join("\n")
}

/// Top-level module → the top-level modules of the same crate it names.
fn imports(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let modules: BTreeMap<String, PathBuf> = std::fs::read_dir(src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| Some((p.file_stem()?.to_str()?.to_string(), p)))
        .filter(|(name, _)| name != "lib" && name != "main")
        .collect();
    let mut graph = BTreeMap::new();
    for (name, path) in &modules {
        let mut named = BTreeSet::new();
        for file in sources(path) {
            let code = code(&file);
            for (i, _) in code.match_indices("crate::") {
                let rest = &code[i + "crate::".len()..];
                let words: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
                    group.split('}').next().unwrap_or_default().split([',', ' ', '\n']).collect()
                } else {
                    vec![rest]
                };
                for word in words {
                    let module: String = word.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                    if modules.contains_key(&module) && &module != name {
                        named.insert(module);
                    }
                }
            }
        }
        graph.insert(name.clone(), named);
    }
    graph
}

/// Whether `to` is reachable from `from`.
fn reaches(graph: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> bool {
    let mut seen = BTreeSet::new();
    let mut queue = vec![from.to_string()];
    while let Some(m) = queue.pop() {
        for next in graph.get(&m).into_iter().flatten() {
            if next == to {
                return true;
            }
            if seen.insert(next.clone()) {
                queue.push(next.clone());
            }
        }
    }
    false
}

#[test]
fn no_top_level_module_imports_from_one_that_imports_it() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut loops = vec![];
    for krate in std::fs::read_dir(&crates).unwrap() {
        let src = krate.unwrap().path().join("src");
        if !src.is_dir() {
            continue;
        }
        let graph = imports(&src);
        for (module, named) in &graph {
            for other in named {
                if reaches(&graph, other, module) {
                    loops.push(format!("{}: {module} -> {other} -> ... -> {module}", src.display()));
                }
            }
        }
    }
    assert!(loops.is_empty(), "module cycles:\n{}", loops.join("\n"));
}
