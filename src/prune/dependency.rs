//! Channel dependencies, derived by following each op's channel map ([`ChannelMap`]) through
//! the graph: no per-architecture knowledge.
//!
//! Every channel of every node output is labelled with an *atom*. An op that makes new channels
//! (conv, linear, and the output of an addition or a gating product) makes new atoms; an op
//! that keeps channels (activations, BatchNorm, pooling, depthwise convs) passes its input's
//! atoms on; a concatenation lists its inputs' atoms one after another (DenseNet); a flatten
//! repeats each channel's atom over the block of features it became. Additions and gating
//! products tie their inputs' atoms and their own, index by index, into one *class*: removing a
//! channel means removing every position labelled with an atom of its class, everywhere.
//!
//! A class cannot lose channels when an op says so ([`OpKind::channel_block`]: the graph input,
//! LayerNorm, learned tables, attention, grouped convolutions) or when it reaches the output.
//!
//! The coupled groups of a component set, which follow from these classes, are
//! [`crate::prune::components::coupled_groups`]: components are built on channel spaces, not the
//! other way round.

use crate::error::Result;
use crate::graph::{stats, ChannelMap, Graph, Mode, NodeId};

/// Channel atoms and classes of a graph.
pub struct ChannelSpaces {
    /// Atom of every channel of every node's output (index: node, then channel).
    pub atoms: Vec<Vec<usize>>,
    /// Class of every atom.
    pub class_of: Vec<usize>,
    /// Why a class cannot lose channels (index: class; None: it can).
    pub blocked: Vec<Option<String>>,
}

impl ChannelSpaces {
    /// Classes of a node's output channels.
    pub fn classes(&self, id: NodeId) -> Vec<usize> {
        self.atoms[id].iter().map(|&a| self.class_of[a]).collect()
    }
    /// Why node `id`'s output channels cannot be removed (the first blocked class).
    pub fn blocked_at(&self, id: NodeId) -> Option<String> {
        self.atoms[id].iter().find_map(|&a| self.blocked[self.class_of[a]].clone())
    }
}

struct UnionFind(Vec<usize>);
impl UnionFind {
    fn find(&mut self, x: usize) -> usize {
        let mut r = x;
        while self.0[r] != r {
            r = self.0[r];
        }
        let mut y = x;
        while self.0[y] != r {
            let n = self.0[y];
            self.0[y] = r;
            y = n;
        }
        r
    }
    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.0[rb.max(ra)] = ra.min(rb);
        }
    }
    fn fresh(&mut self, n: i64) -> Vec<usize> {
        let start = self.0.len();
        self.0.extend(start..start + n.max(0) as usize);
        (start..start + n.max(0) as usize).collect()
    }
}

/// Channels of a tensor of shape `s`: dimension 1 of a 4-d map, the last dimension otherwise.
fn channel_count(s: &[i64]) -> i64 {
    match s.len() {
        4 => s[1],
        0 | 1 => 0,
        _ => *s.last().expect("rank ≥ 2"),
    }
}

/// Computes the channel atoms and classes (one example forward pass gives the shapes).
pub fn channel_spaces(graph: &Graph) -> Result<ChannelSpaces> {
    let outs = tch::no_grad(|| graph.forward_all(&stats::example_inputs(graph, 8), Mode::Eval))?;
    let shapes: Vec<Vec<i64>> = outs.iter().map(|t| t.size()).collect();
    let mut uf = UnionFind(Vec::new());
    let mut atoms: Vec<Vec<usize>> = Vec::with_capacity(shapes.len());
    let mut blocks: Vec<(usize, String)> = Vec::new();
    for (id, node) in graph.nodes().iter().enumerate() {
        let c = channel_count(&shapes[id]);
        let ins: Vec<&Vec<usize>> = node.inputs.iter().map(|&i| &atoms[i]).collect();
        let mut mismatch = false;
        let made = match node.op.kind().channels() {
            ChannelMap::New => uf.fresh(c),
            ChannelMap::Same if ins[0].len() as i64 == c => ins[0].clone(),
            ChannelMap::Same => {
                mismatch = true;
                uf.fresh(c)
            }
            // A concatenation of one input (torchvision's DenseNet writes `cat([x], 1)`) is the
            // identity and passes its atoms on too.
            ChannelMap::Concat if ins.iter().map(|a| a.len() as i64).sum::<i64>() == c => {
                ins.iter().flat_map(|a| a.iter().copied()).collect()
            }
            ChannelMap::Flatten if shapes[node.inputs[0]].len() >= 3 && !ins[0].is_empty() => {
                let block = c / ins[0].len() as i64;
                if block * ins[0].len() as i64 == c {
                    ins[0].iter().flat_map(|&a| std::iter::repeat_n(a, block as usize)).collect()
                } else {
                    mismatch = true;
                    uf.fresh(c)
                }
            }
            ChannelMap::Flatten if ins[0].len() as i64 == c => ins[0].clone(),
            ChannelMap::Slice { start } => match ins[0].get(start as usize..(start + c) as usize) {
                Some(part) => part.to_vec(),
                None => {
                    mismatch = true;
                    uf.fresh(c)
                }
            },
            // Merge, a concatenation along another dimension (every input carries the same
            // channels), or a flatten that keeps them: new atoms tied to each input's.
            ChannelMap::Merge | ChannelMap::Concat | ChannelMap::Flatten => {
                let fresh = uf.fresh(c);
                for (k, a) in ins.iter().enumerate() {
                    if a.len() == fresh.len() {
                        for (&x, &y) in a.iter().zip(&fresh) {
                            uf.union(x, y);
                        }
                    } else if !(a.len() == 1 && shapes[node.inputs[k]].len() == shapes[id].len()) {
                        // Broadcasting one channel over all is harmless; anything else is not
                        // understood, so nothing it touches may lose channels.
                        mismatch = true;
                    }
                }
                fresh
            }
        };
        let why = node.op.kind().channel_block().or_else(|| {
            mismatch.then(|| "its channels do not line up with its inputs' in a way relprune follows".to_string())
        });
        if let Some(why) = why {
            let why = format!("`{}` ({}): {why}", node.name, node.op.kind_name());
            for a in ins.iter().flat_map(|a| a.iter()).chain(&made) {
                blocks.push((*a, why.clone()));
            }
        }
        atoms.push(made);
    }
    for &a in &atoms[graph.output()] {
        blocks.push((a, "it is the model's output".into()));
    }
    let n_atoms = uf.0.len();
    let class_of: Vec<usize> = (0..n_atoms).map(|a| uf.find(a)).collect();
    let mut blocked: Vec<Option<String>> = vec![None; n_atoms];
    for (a, why) in blocks {
        blocked[class_of[a]].get_or_insert(why);
    }
    Ok(ChannelSpaces { atoms, class_of, blocked })
}
