//! Outside `src/graph/ops`, no code tests which op a node holds (`matches!(n.op, Op::X(_))`,
//! `if let Op::X(..) = …`, `let Op::X(..) = … else`, a match arm `Op::X(..) =>`): it asks the op
//! a capability instead (`OpKind`'s `input_kind`, `attends`, `unit_spans`, …), so that adding an
//! op is its own file and one registry line, and no caller keeps a list of kinds. Building an op
//! (`Op::Relu(Relu)` in a model builder or the importer) is not a test and is fine.

use relprune::attribution::weight::{WeightMagnitude, WeightNorm};
use relprune::attribution::Criterion;
use relprune::data::Subset;
use relprune::graph::{Graph, Role, UnitAt};
use relprune::models::Architecture;
use relprune::prune::components::{ComponentKind, ComponentSet};
use relprune::prune::masking::mask_targets;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

const VIT: &str = "vit:size=32,patch=8,layers=2,heads=4,dim=32,mlp=64,classes=10";
const BERT: &str = "bert:vocab=100,dim=32,layers=1,heads=4,mlp=64,positions=16,max_len=16,pooling=cls,classes=3";

/// Whether `src[i..]` starts an op path (`Op::X`, also as `crate::graph::Op::X`): `Op` not
/// part of a longer name, followed by `::` and a capitalised variant.
fn op_path_at(src: &[u8], i: usize) -> bool {
    src[i..].starts_with(b"Op::")
        && (i == 0 || !(src[i - 1].is_ascii_alphanumeric() || src[i - 1] == b'_'))
        && src.get(i + 4).is_some_and(|c| c.is_ascii_uppercase())
}

fn has_op_path(src: &[u8]) -> bool {
    (0..src.len()).any(|i| op_path_at(src, i))
}

/// End (exclusive) of the bracketed group opening at `open`.
fn group_end(src: &[u8], open: usize) -> usize {
    let mut depth = 0usize;
    for (j, &c) in src.iter().enumerate().skip(open) {
        match c {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
    }
    src.len()
}

fn skip_space(src: &[u8], mut i: usize) -> usize {
    while src.get(i).is_some_and(|c| c.is_ascii_whitespace()) {
        i += 1;
    }
    i
}

fn is_word_at(src: &[u8], i: usize, word: &[u8]) -> bool {
    let ident = |c: &u8| c.is_ascii_alphanumeric() || *c == b'_';
    src[i..].starts_with(word) && (i == 0 || !ident(&src[i - 1])) && !src.get(i + word.len()).is_some_and(ident)
}

/// Line comments blanked out (same length, lines kept), so that prose is not scanned.
fn without_comments(src: &str) -> Vec<u8> {
    let mut out = src.as_bytes().to_vec();
    let mut i = 0;
    while i + 1 < out.len() {
        if out[i] == b'/' && out[i + 1] == b'/' {
            while i < out.len() && out[i] != b'\n' {
                out[i] = b' ';
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    out
}

/// Lines (1-based) of `src` where code tests an op variant.
fn op_variant_tests(src: &str) -> Vec<usize> {
    let s = without_comments(src);
    let line = |i: usize| s[..i].iter().filter(|&&c| c == b'\n').count() + 1;
    let mut hits = Vec::new();
    for i in 0..s.len() {
        // matches!(x, Op::X(..))
        if s[i..].starts_with(b"matches!") {
            let open = skip_space(&s, i + b"matches!".len());
            if s.get(open) == Some(&b'(') && has_op_path(&s[open..group_end(&s, open)]) {
                hits.push(line(i));
            }
        }
        // `let PATTERN =` (if let, while let, let … else) whose pattern names a variant; an
        // irrefutable `let` cannot, so every such pattern is a test.
        if is_word_at(&s, i, b"let") {
            let start = i + 3;
            let end = (start..s.len()).find(|&j| {
                s[j] == b';'
                    || (s[j] == b'='
                        && !b"=!<>+-*/%&|^.".contains(&s[j - 1])
                        && !s.get(j + 1).is_some_and(|c| *c == b'=' || *c == b'>'))
            });
            if let Some(end) = end.filter(|&e| s[e] == b'=') {
                if has_op_path(&s[start..end]) {
                    hits.push(line(i));
                }
            }
        }
        // A match arm: the variant (with its fields) followed by `=>`, a guard or another
        // alternative — where a constructor could not stand.
        if op_path_at(&s, i) {
            let mut j = i + 4;
            while s.get(j).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_') {
                j += 1;
            }
            j = skip_space(&s, j);
            if matches!(s.get(j), Some(b'(' | b'{')) {
                j = skip_space(&s, group_end(&s, j));
            }
            let rest = &s[j..];
            if rest.starts_with(b"=>")
                || (rest.starts_with(b"|") && !rest.starts_with(b"||"))
                || is_word_at(&s, j, b"if")
            {
                hits.push(line(i));
            }
        }
    }
    hits.sort_unstable();
    hits.dedup();
    hits
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_op_variant_tests_outside_the_op_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    files.sort();
    let mut found = Vec::new();
    for path in files {
        let rel = path.strip_prefix(root).expect("under the crate").to_string_lossy().replace('\\', "/");
        if rel.starts_with("src/graph/ops/") {
            continue;
        }
        let src = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"));
        let lines: Vec<&str> = src.lines().collect();
        for n in op_variant_tests(&src) {
            let text = lines[n - 1].trim();
            found.push(format!("{rel}:{n}: {text}"));
        }
    }
    assert!(
        found.is_empty(),
        "code outside src/graph/ops tests which op a node holds; ask an `OpKind` capability instead \
         (docs/adding-an-op.md):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_scanner_flags_variant_tests() {
    let snippet = r#"
fn f(graph: &Graph, n: &Node) {
    let a = matches!(n.op, Op::Attention(_));
    let b = graph.nodes().iter().any(|n| matches!(n.op, relprune::graph::Op::Mul(_)));
    if let Op::Conv2d(c) = &n.op {}
    let Op::Input(kind) = &n.op else { unreachable!() };
    if let (Op::Linear(_), Some(w)) = (&n.op, graph.param(0, Role::Weight)) {}
    let free = match &n.op {
        Op::Linear(l) => !l.bias,
        crate::graph::Op::Conv2d(c) if c.groups == 1 => !c.bias,
        Op::Add(_) | Op::Mul(_) => false,
        Op::Linear(Linear {
            bias, ..
        }) => bias,
        _ => false,
    };
}
"#;
    assert_eq!(op_variant_tests(snippet), vec![3, 4, 5, 6, 7, 9, 10, 11, 12]);
}

#[test]
fn the_scanner_leaves_constructors_and_prose_alone() {
    let snippet = r#"
fn g(b: &mut GraphBuilder, x: NodeId, name: &str) {
    let y = b.add("relu", Op::Relu(Relu), &[x]);
    let op = Op::Conv2d(Conv2d::new(3, 8, 3).bias(true));
    let (op, shape) = if wide { (Op::Flatten(Flatten { start_dim: 1 }), v) } else { (Op::Relu(Relu), w) };
    let act = match name {
        "Relu" => Op::Relu(Relu),
        "Clip" => Op::Hardtanh(Hardtanh { min_val: 0.0, max_val: 6.0 }),
        _ => Op::Silu(Silu),
    };
    let image = matches!(kind, InputKind::Image { .. });
    let mine = matches!(other, MyOp::Linear(_));
    // matches!(n.op, Op::Attention(_)) is what this file must not do.
}
"#;
    assert_eq!(op_variant_tests(snippet), Vec::<usize>::new());
}

fn build(arch: &str) -> Graph {
    Architecture::parse(arch).unwrap().build(1).unwrap()
}

#[test]
fn graphs_say_whether_they_attend_and_gate() {
    let answers = |arch: &str| {
        let g = build(arch);
        (g.has_attention(), g.has_gates())
    };
    assert_eq!(answers(VIT), (true, false));
    assert_eq!(answers(BERT), (true, false));
    assert_eq!(answers("efficientnet_b0:size=64,classes=10"), (false, true));
    assert_eq!(answers("resnet18:size=64"), (false, false));
}

/// Unit u's rows of an (out, in) weight in each of `parts` parts of `units · size` rows, or its
/// columns (`dim` 1).
fn unit_slice_l1(w: &Tensor, dim: i64, units: i64, size: i64, parts: i64, u: i64) -> f64 {
    (0..parts).map(|p| w.narrow(dim, p * units * size + u * size, size).abs().sum(Kind::Double).double_value(&[])).sum()
}

/// A head's holders: the output projection reads it, the q / k / v projections (packed: one, in
/// three parts) make it; the weight criterion sums exactly those slices and masking zeroes the
/// output projection's columns.
#[test]
fn head_spans_reach_the_projections() {
    for (arch, prefix, q, out, packed) in [
        (VIT, "encoder.layers.encoder_layer_0", ".self_attention.in_proj", ".self_attention.out_proj", true),
        (BERT, "encoder.layer.0", ".attention.self.query", ".attention.output.dense", false),
    ] {
        let g = build(arch);
        let att = g.find(&format!("{prefix}{}", if packed { ".self_attention" } else { ".attention.self" })).unwrap();
        let (q, out) = (g.find(&format!("{prefix}{q}")).unwrap(), g.find(&format!("{prefix}{out}")).unwrap());
        let holders = g.unit_holders(att);
        let at: Vec<UnitAt> = holders.iter().map(|h| h.span.at).collect();
        let mut expected = vec![UnitAt::Readers];
        expected.extend((0..if packed { 1 } else { 3 }).map(UnitAt::Input));
        expected.push(UnitAt::Output);
        assert_eq!(at, expected, "{arch}");
        assert_eq!(holders[0].nodes, vec![out]);
        assert_eq!(holders[0].params(&g, out), vec![(Role::Weight, 1)]);
        assert_eq!(holders[1].nodes, vec![q]);
        assert_eq!(holders[1].params(&g, q), vec![(Role::Weight, 0), (Role::Bias, 0)]);
        // Head 1 of 4, 8 dimensions each: channels 8..16 (of each of q | k | v when packed).
        let rows: Vec<i64> =
            if packed { [8..16, 40..48, 72..80].into_iter().flatten().collect() } else { (8..16).collect() };
        assert_eq!(holders[1].span.positions(4, &[1]), rows, "{arch}");

        let comps = ComponentSet::find(&g, ComponentKind::Heads).unwrap();
        let layer = comps.layers.iter().find(|l| l.node == att).unwrap();
        let key = |id, role| g.node(id).params[&role].clone();
        assert_eq!(
            mask_targets(&g, layer, &[1]).unwrap(),
            vec![(key(out, Role::Weight), 1, (8..16).collect::<Vec<i64>>())]
        );

        let scores = WeightMagnitude { norm: WeightNorm::L1 }.score(&g, &comps, &Subset::empty()).unwrap();
        let producers: Vec<_> = if packed { vec![q] } else { g.node(att).inputs[..3].to_vec() };
        for h in 0..4 {
            let w = |id| g.require_param(id, Role::Weight).unwrap();
            let mut want = unit_slice_l1(w(out), 1, 4, 8, 1, h);
            for &p in &producers {
                want += unit_slice_l1(w(p), 0, 4, 8, if packed { 3 } else { 1 }, h);
            }
            let got = scores.values[layer.offset + h as usize];
            assert!((got - want).abs() <= 1e-9 * want, "{arch} head {h}: {got} vs {want}");
        }
    }
}

/// A filter is one output channel of its conv: the weight criterion sums its kernel.
#[test]
fn a_filter_is_its_own_output_channel() {
    let g = build("resnet18:size=64");
    let conv = g.find("conv1").unwrap();
    let holders = g.unit_holders(conv);
    assert_eq!(holders.len(), 1);
    assert_eq!((holders[0].span.at, holders[0].nodes.clone()), (UnitAt::Output, vec![conv]));
    let comps = ComponentSet::find(&g, ComponentKind::Filters).unwrap();
    let layer = comps.layers.iter().find(|l| l.node == conv).unwrap();
    let scores = WeightMagnitude { norm: WeightNorm::L1 }.score(&g, &comps, &Subset::empty()).unwrap();
    let w = g.require_param(conv, Role::Weight).unwrap();
    for f in [0, 5, layer.count as i64 - 1] {
        let want = unit_slice_l1(w, 0, layer.count as i64, 1, 1, f);
        let got = scores.values[layer.offset + f as usize];
        assert!((got - want).abs() <= 1e-9 * want, "filter {f}: {got} vs {want}");
    }
}
