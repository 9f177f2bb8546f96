//! The crate's shape, checked from its source: no file imports a module of a higher
//! layer (the list in `LAYERS`, from `shared/design.md`), and the imports between files
//! form no cycle. Read from the text of `src/`: every `crate::…`, `super::…` and
//! `self::…` path, each resolved to the file of the deepest module it names.
//!
//! A file reaching a sibling through the re-exports of its own parent (`super::Thing`
//! where `Thing` lives in `super::thing`) counts as importing the parent, which imports
//! it back: name the sibling instead. A parent's `pub use self::child::Thing` is its
//! public face, not a use, and is not counted.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing check should panic loudly

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules from the bottom layer up; a module may import its own layer and
/// those below.
const LAYERS: &[&[&str]] = &[
    &["clock", "crypto", "locales", "telemetry"],
    &["config"],
    &["auth"],
    &["tgc"],
    &["services"],
    &["tickets"],
    &["protocol"],
    &["outbound"],
    &["web"],
    &["app"],
    &["lib", "main"],
];

fn layer(top: &str) -> Option<usize> {
    LAYERS.iter().position(|names| names.contains(&top))
}

/// `src/web/transport/mod.rs` → `["web", "transport"]`; `src/lib.rs` → `["lib"]`.
fn module_of(file: &Path, src: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap_or(file);
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source without comments, string literals and `#[cfg(test)]` modules at the end
/// of a file (tests may use anything).
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '"' => {
                let mut escaped = false;
                for c in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        break;
                    }
                }
                out.push_str("\"\"");
            }
            c => out.push(c),
        }
    }
    // Re-exports of a child (`pub use self::child::X;`) shape the module's public face;
    // the parent does not depend on the child through them.
    out.lines()
        .filter(|line| {
            let line = line.trim_start();
            !(line.starts_with("pub") && line.contains(" use self::"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The module paths a file names: `crate::a::b`, `super::x`, `self::y`, including those
/// inside `use` groups (`use crate::a::{b, c::d}`).
fn paths_named(code: &str, module: &[String], is_mod_file: bool) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let bytes: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let starts = ["crate::", "super::", "self::"]
            .iter()
            .find(|p| bytes[i..].iter().take(p.len()).copied().eq(p.chars()))
            .filter(|_| i == 0 || !ident(bytes[i - 1]) && bytes[i - 1] != ':');
        let Some(start) = starts else {
            i += 1;
            continue;
        };
        // Read `seg::seg::…`, following one level of `{…}` groups.
        let mut j = i;
        let mut base: Vec<String> = Vec::new();
        let mut segment = String::new();
        while j < bytes.len() {
            let c = bytes[j];
            if ident(c) {
                segment.push(c);
                j += 1;
            } else if c == ':' && bytes.get(j + 1) == Some(&':') {
                base.push(std::mem::take(&mut segment));
                j += 2;
            } else {
                break;
            }
        }
        if !segment.is_empty() {
            base.push(segment);
        }
        let mut groups = vec![base.clone()];
        if bytes.get(j) == Some(&'{') {
            let end = bytes[j..]
                .iter()
                .position(|&c| c == '}')
                .map_or(j, |e| j + e);
            let inner: String = bytes[j + 1..end].iter().collect();
            groups = inner
                .split(',')
                .map(|item| {
                    let mut path = base.clone();
                    path.extend(
                        item.split("::")
                            .map(|s| s.trim().trim_start_matches('{').to_owned())
                            .filter(|s| !s.is_empty() && s.chars().all(ident)),
                    );
                    path
                })
                .collect();
        }
        for path in groups {
            let mut absolute: Vec<String> = Vec::new();
            let mut rest = path.as_slice();
            match start.trim_end_matches("::") {
                "crate" => {
                    rest = &rest[1..];
                }
                _ => {
                    // `super` from `a/b.rs` is `a`; from `a/b/mod.rs` (module a::b) too is `a`.
                    absolute.extend(module.iter().cloned());
                    let _ = is_mod_file;
                    while let Some((first, tail)) = rest.split_first() {
                        match first.as_str() {
                            "super" => {
                                absolute.pop();
                            }
                            "self" => {}
                            _ => break,
                        }
                        rest = tail;
                    }
                }
            }
            absolute.extend(rest.iter().cloned());
            out.push(absolute);
        }
        i = j.max(i + 1);
    }
    out
}

#[test]
fn no_module_imports_a_higher_layer_and_files_form_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeMap<Vec<String>, PathBuf> = files
        .iter()
        .map(|f| (module_of(f, &src), f.clone()))
        .collect();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    let mut upward = Vec::new();
    for (module, file) in &modules {
        // The load generator is its own program; test modules may use anything.
        if module.first().is_some_and(|m| m == "bin" || m == "bench")
            || module
                .last()
                .is_some_and(|m| m == "tests" || m == "testing")
        {
            continue;
        }
        let is_mod = file.ends_with("mod.rs");
        let code = code_of(&std::fs::read_to_string(file).unwrap());
        for path in paths_named(&code, module, is_mod) {
            // The deepest module file the path names.
            let target = (1..=path.len())
                .rev()
                .map(|n| path[..n].to_vec())
                .find(|m| modules.contains_key(m));
            let Some(target) = target else { continue };
            if &target == module {
                continue;
            }
            let (from, to) = (module[0].as_str(), target[0].as_str());
            if let (Some(a), Some(b)) = (layer(from), layer(to))
                && b > a
            {
                upward.push(format!("{} -> {}", module.join("::"), path.join("::")));
            }
            edges.entry(module.clone()).or_default().insert(target);
        }
    }
    upward.sort();
    upward.dedup();
    assert!(
        upward.is_empty(),
        "imports of a higher layer:\n  {}",
        upward.join("\n  ")
    );
    // Depth-first search; every back edge closes a cycle.
    fn visit(
        node: &Vec<String>,
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        state: &mut BTreeMap<Vec<String>, u8>,
        stack: &mut Vec<Vec<String>>,
        cycles: &mut Vec<String>,
    ) {
        match state.get(node) {
            Some(2) => return,
            Some(1) => {
                let at = stack.iter().position(|n| n == node).unwrap_or(0);
                let mut names: Vec<String> = stack[at..].iter().map(|m| m.join("::")).collect();
                names.push(node.join("::"));
                cycles.push(names.join(" -> "));
                return;
            }
            _ => {}
        }
        state.insert(node.clone(), 1);
        stack.push(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            visit(next, edges, state, stack, cycles);
        }
        stack.pop();
        state.insert(node.clone(), 2);
    }
    let mut state = BTreeMap::new();
    let mut cycles = Vec::new();
    for node in edges.keys() {
        visit(node, &edges, &mut state, &mut Vec::new(), &mut cycles);
    }
    assert!(
        cycles.is_empty(),
        "import cycles between files:\n  {}",
        cycles.join("\n  ")
    );
}
