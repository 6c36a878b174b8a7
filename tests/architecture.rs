//! The module layering of `src/`, checked on the source text so it stays true.
//!
//! The library's top-level modules form layers, each depending only on those below:
//! graph → prune::components / prune::dependency → attribution → prune::ranking → pruning
//! (prune::masking, surgery, budget, compress) → evaluate → optimize → workflow → front ends
//! (cli). A folder whose `mod.rs` only declares its modules (`prune`) is a namespace: its modules
//! are checked one by one, since the pipeline passes through it. `util`, `error`, `device` and `runtime`
//! are leaf helpers anyone may import. This test reads every library file, collects the
//! references `crate::<module>…` (in `use` trees, groups included, and inline paths) and the
//! `super::…` paths that climb out of their top-level module, and asserts that the graph of
//! top-level modules has no cycle and that the graph (ops included) uses neither attribution
//! nor export: ops own their LRP rule and ONNX export through contexts defined in `graph`.
//!
//! The scan is textual and deliberately crude: comments, string and char literals are blanked
//! first (line numbers kept); items under `#[cfg(test)]` are left out, because unit tests may
//! build their fixtures with higher layers (ranking's tests build models) without the library
//! depending on them. Names at the crate root that are not modules (`crate::Error`,
//! `crate::Result`, `crate::bail!`, re-exported from `error`, a leaf) are ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One reference from a file to another top-level module.
#[derive(Clone, Debug, PartialEq)]
struct Reference {
    from: String,
    to: String,
    /// `path:line`, the path relative to `src/`.
    at: String,
}

/// `text` with comments, string literals and char literals replaced by spaces (newlines kept,
/// so line numbers stay).
fn strip(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, s: &[char]| out.extend(s.iter().map(|&ch| if ch == '\n' { '\n' } else { ' ' }));
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    let mut i = 0;
    while i < c.len() {
        let rest = &c[i..];
        if rest.starts_with(&['/', '/']) {
            let end = rest.iter().position(|&ch| ch == '\n').unwrap_or(rest.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest.starts_with(&['/', '*']) {
            // Block comments nest in Rust.
            let (mut depth, mut j) = (0usize, 0);
            while j < rest.len() {
                if rest[j..].starts_with(&['/', '*']) {
                    depth += 1;
                    j += 2;
                } else if rest[j..].starts_with(&['*', '/']) {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&mut out, &rest[..j]);
            i += j;
        } else if (rest[0] == 'r' || rest.starts_with(&['b', 'r'])) && (i == 0 || !ident(c[i - 1])) && {
            let k = if rest[0] == 'b' { 2 } else { 1 };
            let hashes = rest[k..].iter().take_while(|&&ch| ch == '#').count();
            rest.get(k + hashes) == Some(&'"')
        } {
            // Raw string r#"…"#: ends at a quote followed by as many hashes.
            let k = if rest[0] == 'b' { 2 } else { 1 };
            let hashes = rest[k..].iter().take_while(|&&ch| ch == '#').count();
            let mut j = k + hashes + 1;
            while j < rest.len()
                && !(rest[j] == '"' && rest[j + 1..].iter().take(hashes).filter(|&&h| h == '#').count() == hashes)
            {
                j += 1;
            }
            let end = (j + 1 + hashes).min(rest.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest[0] == '"' {
            let mut j = 1;
            while j < rest.len() && rest[j] != '"' {
                j += if rest[j] == '\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(rest.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest[0] == '\'' && (rest.get(1) == Some(&'\\') || rest.get(2) == Some(&'\'')) {
            // A char literal ('x', '\n', '\u{..}'), not a lifetime ('a).
            // After a backslash the escaped character is skipped, then the closing quote.
            let end = if rest[1] == '\\' {
                rest.get(3..).and_then(|r| r.iter().position(|&ch| ch == '\'')).map_or(rest.len(), |p| p + 4)
            } else {
                3
            };
            blank(&mut out, &rest[..end]);
            i += end;
        } else {
            out.push(rest[0]);
            i += 1;
        }
    }
    out
}

/// Tokens of stripped source: identifiers (with `$crate` as `crate`), `::` and single
/// punctuation characters, each with its line.
fn tokens(text: &str) -> Vec<(String, usize)> {
    let c: Vec<char> = text.chars().collect();
    let (mut out, mut line, mut i) = (Vec::new(), 1, 0);
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch.is_alphanumeric() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push((c[start..i].iter().collect(), line));
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            out.push(("::".into(), line));
            i += 2;
        } else {
            out.push((ch.to_string(), line));
            i += 1;
        }
    }
    out
}

/// The tokens without the items under `#[cfg(test)]` (an item ends at its `;` or at the brace
/// that closes its first `{`).
fn without_test_items(toks: Vec<(String, usize)>) -> Vec<(String, usize)> {
    let is = |t: &[(String, usize)], s: &[&str]| t.len() >= s.len() && t.iter().zip(s).all(|(a, b)| a.0 == *b);
    let mut out = Vec::with_capacity(toks.len());
    let mut i = 0;
    while i < toks.len() {
        if is(&toks[i..], &["#", "[", "cfg", "(", "test", ")", "]"]) {
            let mut j = i + 7;
            let mut depth = 0usize;
            while j < toks.len() {
                match toks[j].0.as_str() {
                    "{" => depth += 1,
                    "}" => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ";" if depth == 0 => break,
                    _ => {}
                }
                j += 1;
            }
            i = j + 1;
        } else {
            out.push(toks[i].clone());
            i += 1;
        }
    }
    out
}

/// The paths of a path tree starting at `toks[i]` (`a::b::{c, d::e}` gives `a::b::c` and
/// `a::b::d::e`), each with the line it starts on.
fn path_tree(toks: &[(String, usize)], i: usize, prefix: Vec<String>, out: &mut Vec<(Vec<String>, usize)>) -> usize {
    let mut path = prefix;
    let mut i = i;
    let line = toks.get(i).map_or(0, |t| t.1);
    loop {
        match toks.get(i).map(|t| t.0.as_str()) {
            Some("{") => {
                // A group: subtrees separated by commas.
                i += 1;
                while i < toks.len() && toks[i].0 != "}" {
                    if toks[i].0 == "," {
                        i += 1;
                        continue;
                    }
                    i = path_tree(toks, i, path.clone(), out);
                }
                return i + 1;
            }
            Some(t) if t.chars().next().is_some_and(|ch| ch.is_alphanumeric() || ch == '_') => {
                path.push(t.to_string());
                i += 1;
                if toks.get(i).map(|t| t.0.as_str()) == Some("::") {
                    i += 1;
                } else {
                    break;
                }
            }
            _ => break,
        }
    }
    out.push((path, line));
    // Skip `as alias` and anything else up to the end of this subtree.
    while i < toks.len() && !matches!(toks[i].0.as_str(), "," | "}" | ";") && toks[i].0 != "{" {
        if toks[i].0 == "as" {
            i += 2;
        } else {
            break;
        }
    }
    i
}

/// The module path of a file under `src/` (`graph/ops/mod.rs` → graph, ops).
fn module_path(rel: &str) -> Vec<String> {
    let mut parts: Vec<String> = rel.trim_end_matches(".rs").split('/').map(String::from).collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The references of one file (`rel`: its path under `src/`) to top-level modules other than
/// its own. `super` is resolved against the module it is written in, inline `mod x { … }`
/// blocks included.
fn references(rel: &str, text: &str, modules: &BTreeSet<String>, namespaces: &BTreeSet<String>) -> Vec<Reference> {
    let file = module_path(rel);
    let from = unit(&file, namespaces);
    let toks = without_test_items(tokens(&strip(text)));
    let mut paths = Vec::new();
    // Inline modules open at this point, with the brace depth inside each.
    let (mut inline, mut depth): (Vec<(String, usize)>, usize) = (Vec::new(), 0);
    let mut i = 0;
    while i < toks.len() {
        let t = toks[i].0.as_str();
        // A path starts at `crate` or `super` not preceded by `::` (`super::super` is one path).
        let starts = (t == "crate" || t == "super")
            && toks.get(i + 1).is_some_and(|n| n.0 == "::")
            && (i == 0 || toks[i - 1].0 != "::");
        if starts {
            let here: Vec<String> = file.iter().cloned().chain(inline.iter().map(|m| m.0.clone())).collect();
            let mut found = Vec::new();
            i = path_tree(&toks, i, Vec::new(), &mut found);
            paths.extend(found.into_iter().map(|(p, line)| (here.clone(), p, line)));
            continue;
        }
        match t {
            "mod" if toks.get(i + 2).is_some_and(|b| b.0 == "{") => {
                depth += 1;
                inline.push((toks[i + 1].0.clone(), depth));
                i += 3;
                continue;
            }
            "{" => depth += 1,
            "}" => {
                if inline.last().is_some_and(|m| m.1 == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
            }
            _ => {}
        }
        i += 1;
    }
    let mut out = Vec::new();
    for (here, path, line) in paths {
        let absolute: Vec<String> = if path[0] == "crate" {
            path[1..].to_vec()
        } else {
            let ups = path.iter().take_while(|s| *s == "super").count();
            if ups > here.len() {
                continue;
            }
            here[..here.len() - ups].iter().chain(&path[ups..]).cloned().collect()
        };
        if !absolute.first().is_some_and(|m| modules.contains(m)) {
            continue;
        }
        let to = unit(&absolute, namespaces);
        let r = Reference { from: from.clone(), to: to.clone(), at: format!("{rel}:{line}") };
        // A group (`use crate::graph::{A, B}`) is one reference.
        if from != to && !out.contains(&r) {
            out.push(r);
        }
    }
    out
}

/// The unit a module path belongs to: its top-level module, or within a namespace folder the
/// namespace's module (`prune::surgery`).
fn unit(path: &[String], namespaces: &BTreeSet<String>) -> String {
    match path {
        [ns, m, ..] if namespaces.contains(ns) => format!("{ns}::{m}"),
        [m, ..] => m.clone(),
        [] => String::new(),
    }
}

/// Top-level folders whose `mod.rs` holds nothing but `pub mod` lines (and docs).
fn namespaces(modules: &BTreeSet<String>) -> BTreeSet<String> {
    modules
        .iter()
        .filter(|m| {
            let Ok(text) = std::fs::read_to_string(src().join(m.as_str()).join("mod.rs")) else { return false };
            let toks: Vec<String> = tokens(&strip(&text)).into_iter().map(|t| t.0).collect();
            !toks.is_empty() && toks.chunks(4).all(|c| c.len() == 4 && c[0] == "pub" && c[1] == "mod" && c[3] == ";")
        })
        .cloned()
        .collect()
}

/// The strongly connected components of the module graph that hold more than one module: its
/// cycles, each sorted.
fn cycles(refs: &[Reference]) -> Vec<Vec<String>> {
    let mut next: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for r in refs {
        next.entry(&r.from).or_default().insert(&r.to);
        next.entry(&r.to).or_default();
    }
    // Tarjan's algorithm.
    struct State<'a> {
        next: &'a BTreeMap<&'a str, BTreeSet<&'a str>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        for &w in &s.next[v] {
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                s.low.entry(v).and_modify(|l| *l = (*l).min(lw));
            } else if s.stack.contains(&w) {
                let iw = s.index[w];
                s.low.entry(v).and_modify(|l| *l = (*l).min(iw));
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.out.push(comp);
            }
        }
    }
    let mut s = State { next: &next, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), out: Vec::new() };
    for &v in next.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.out.sort();
    s.out
}

/// Each cycle with the references between its modules, one line each.
fn describe(cycles: &[Vec<String>], refs: &[Reference]) -> String {
    let mut text = String::new();
    for c in cycles {
        text.push_str(&format!("cycle between {}:\n", c.join(", ")));
        for r in refs.iter().filter(|r| c.contains(&r.from) && c.contains(&r.to)) {
            text.push_str(&format!("  {} → {}  at {}\n", r.from, r.to, r.at));
        }
    }
    text
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, as (path relative to `src/`, text), sorted.
fn rust_files(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p.strip_prefix(src()).unwrap().to_string_lossy().replace('\\', "/");
                out.push((rel, std::fs::read_to_string(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// The library's top-level modules (the `mod` lines of `lib.rs`).
fn library_modules() -> BTreeSet<String> {
    let lib = strip(&std::fs::read_to_string(src().join("lib.rs")).unwrap());
    let toks = tokens(&lib);
    toks.windows(2).filter(|w| w[0].0 == "mod").map(|w| w[1].0.clone()).collect()
}

/// The references between the library's top-level modules (the binary's `cli` is a separate
/// crate, above the library by construction).
fn library_references() -> Vec<Reference> {
    let modules = library_modules();
    assert!(modules.len() > 10 && modules.contains("graph"), "lib.rs's modules not found: {modules:?}");
    let namespaces = namespaces(&modules);
    assert!(namespaces.contains("prune"), "prune/ is a namespace of the pipeline's pruning steps");
    rust_files(&src())
        .iter()
        .filter(|(rel, _)| modules.contains(&module_path(rel)[0]))
        .flat_map(|(rel, text)| references(rel, text, &modules, &namespaces))
        .collect()
}

#[test]
fn top_level_modules_have_no_cycles() {
    let refs = library_references();
    let found = cycles(&refs);
    assert!(
        found.is_empty(),
        "the top-level modules of src/ import each other in a cycle; move the definitions so that \
         dependencies point down (graph → components/dependency → attribution → ranking → pruning → \
         evaluate → optimize → cli):\n{}",
        describe(&found, &refs)
    );
}

#[test]
fn the_graph_depends_on_neither_attribution_nor_export() {
    let bad: Vec<String> = library_references()
        .into_iter()
        .filter(|r| r.from == "graph" && (r.to == "attribution" || r.to == "export"))
        .map(|r| format!("  {} → {} at {}", r.from, r.to, r.at))
        .collect();
    assert!(
        bad.is_empty(),
        "src/graph must not use crate::attribution or crate::export (ops reach them through the contexts of \
         src/graph/ops/context.rs):\n{}",
        bad.join("\n")
    );
}

#[test]
fn clap_is_only_used_by_the_command_line() {
    let bad: Vec<String> = rust_files(&src())
        .iter()
        .filter(|(rel, _)| !(rel.starts_with("cli/") || rel == "main.rs"))
        .flat_map(|(rel, text)| {
            tokens(&strip(text))
                .into_iter()
                .filter(|t| t.0 == "clap")
                .map(move |t| format!("  {rel}:{}", t.1))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        bad.is_empty(),
        "clap is the command line's business (src/cli, src/main.rs), found at:\n{}",
        bad.join("\n")
    );
}

// The checker itself, on small made-up sources.

fn modules(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn all_refs(files: &[(&str, &str)], names: &[&str]) -> Vec<Reference> {
    all_refs_in(files, names, &[])
}

fn all_refs_in(files: &[(&str, &str)], names: &[&str], namespaces: &[&str]) -> Vec<Reference> {
    let (m, ns) = (modules(names), modules(namespaces));
    files.iter().flat_map(|(rel, text)| references(rel, text, &m, &ns)).collect()
}

#[test]
fn a_namespace_is_checked_module_by_module() {
    // The pipeline passes through `p`: p::low → a → p::high is a layering, not a cycle.
    let files = [
        (
            "p/high.rs",
            "use crate::a::A;
use super::low::L;
",
        ),
        (
            "a.rs",
            "use crate::p::low::L;
",
        ),
        (
            "p/low.rs",
            "pub struct L;
",
        ),
    ];
    let refs = all_refs_in(&files, &["a", "p"], &["p"]);
    let seen: Vec<(&str, &str)> = refs.iter().map(|r| (r.from.as_str(), r.to.as_str())).collect();
    assert_eq!(seen, vec![("p::high", "a"), ("p::high", "p::low"), ("a", "p::low")]);
    assert!(cycles(&refs).is_empty());
    // Without the namespace the folder is one module, and the same files make a cycle.
    assert_eq!(cycles(&all_refs(&files, &["a", "p"])), vec![vec!["a".to_string(), "p".into()]]);
}

#[test]
fn checker_finds_a_cycle_and_where_it_is() {
    let files = [
        ("a/mod.rs", "use crate::{b::Thing, error::Result};\npub fn f() {}\n"),
        ("b.rs", "//! Uses c.\npub struct Thing;\nfn g() { crate::c::h(); }\n"),
        ("c/deep.rs", "use crate::{\n    d,\n    a::{f as g, self},\n};\n"),
        ("d.rs", "pub fn leaf() {}\n"),
    ];
    let refs = all_refs(&files, &["a", "b", "c", "d", "error"]);
    let found = cycles(&refs);
    assert_eq!(found, vec![vec!["a".to_string(), "b".into(), "c".into()]]);
    let text = describe(&found, &refs);
    assert!(text.contains("a → b  at a/mod.rs:1"), "{text}");
    assert!(text.contains("b → c  at b.rs:3"), "{text}");
    assert!(text.contains("c → a  at c/deep.rs:3"), "{text}");
    assert!(!text.contains("→ d"), "d is not on the cycle: {text}");
    // Without the closing edge, no cycle.
    let acyclic: Vec<Reference> = refs.into_iter().filter(|r| r.to != "a").collect();
    assert!(cycles(&acyclic).is_empty());
}

#[test]
fn checker_ignores_comments_strings_and_test_items_and_resolves_super() {
    let files = [
        (
            "a.rs",
            "// use crate::b;\n/* crate::b::x /* nested */ crate::b */\nconst S: &str = \"crate::b::y\";\n\
             const R: &str = r#\"crate::b \"quoted\" \"#;\nconst C: char = '\"';\nfn f<'a>(x: &'a str) {}\n\
             const Q: [char; 2] = ['\\'', '{'];\n\
             #[cfg(test)]\nmod tests {\n    use crate::b::z;\n    fn t() { let s = \"}\"; }\n}\n\
             #[cfg(test)]\nuse crate::b::w;\n",
        ),
        // From the top level, `super::` is the crate root: a reference to `b`.
        ("c.rs", "use super::b::thing;\n"),
        // Within `d`, `super::super` stays in `d`.
        ("d/e/f.rs", "use super::super::g;\nfn x() { super::super::super::b::y(); }\n"),
    ];
    let refs = all_refs(&files, &["a", "b", "c", "d"]);
    let seen: Vec<(&str, &str, &str)> = refs.iter().map(|r| (r.from.as_str(), r.to.as_str(), r.at.as_str())).collect();
    assert_eq!(seen, vec![("c", "b", "c.rs:1"), ("d", "b", "d/e/f.rs:2")]);
}

#[test]
fn checker_tells_visibilities_from_paths_and_follows_inline_modules() {
    // `pub(crate)` and `pub(super)` are visibilities, not paths; `crate::b` after them counts.
    // In an inline module, `super` is the file's module.
    let files = [(
        "a.rs",
        "pub(crate) fn f() -> crate::b::T { todo!() }\npub(super) use crate::c as d;\n\
         mod inner {\n    use super::f;\n    fn g() { if true { super::super::b::x() } }\n}\nuse super::c::y;\n",
    )];
    let refs = all_refs(&files, &["a", "b", "c", "f"]);
    let seen: Vec<(&str, &str)> = refs.iter().map(|r| (r.to.as_str(), r.at.as_str())).collect();
    assert_eq!(seen, vec![("b", "a.rs:1"), ("c", "a.rs:2"), ("b", "a.rs:5"), ("c", "a.rs:7")]);
}
