//! Executing a graph: one sweep over the nodes in topological order.

use super::ops::Ctx;
use super::{Graph, InputKind, Mode, Node, NodeId};
use crate::error::{Error, Result};
use tch::Tensor;

impl Graph {
    /// Runs the graph and returns its output. Intermediate results are freed as soon as their
    /// last consumer has run. Gradients are tracked as usual; wrap in `tch::no_grad` for inference.
    pub fn forward(&self, inputs: &[Tensor], mode: Mode) -> Result<Tensor> {
        let last_use = self.last_use();
        let mut values: Vec<Option<Tensor>> = (0..self.nodes().len()).map(|_| None).collect();
        self.bind_inputs(inputs, &mut values)?;
        for id in 0..self.nodes().len() {
            if values[id].is_none() {
                let node = self.node(id);
                let xs: Vec<&Tensor> = node.inputs.iter().map(|&i| values[i].as_ref().expect("topological")).collect();
                let y = self.run_node(id, &xs, mode)?;
                values[id] = Some(y);
                for &i in &node.inputs {
                    if last_use[i] == id && i != self.output() {
                        values[i] = None;
                    }
                }
            }
        }
        Ok(values[self.output()].take().expect("output computed"))
    }

    /// Runs the graph and keeps every node's output (index = node id).
    pub fn forward_all(&self, inputs: &[Tensor], mode: Mode) -> Result<Vec<Tensor>> {
        self.forward_with(inputs, mode, &mut |_, _| None)
    }

    /// Like [`Graph::forward_all`], but `hook(id, output)` may replace a node's output before
    /// its consumers see it (used by interventions such as gating attention heads).
    pub fn forward_with(
        &self,
        inputs: &[Tensor],
        mode: Mode,
        hook: &mut dyn FnMut(NodeId, &Tensor) -> Option<Tensor>,
    ) -> Result<Vec<Tensor>> {
        let mut values: Vec<Option<Tensor>> = (0..self.nodes().len()).map(|_| None).collect();
        self.bind_inputs(inputs, &mut values)?;
        for id in 0..self.nodes().len() {
            let y = match values[id].take() {
                Some(v) => v,
                None => {
                    let node = self.node(id);
                    let xs: Vec<&Tensor> =
                        node.inputs.iter().map(|&i| values[i].as_ref().expect("topological")).collect();
                    self.run_node(id, &xs, mode)?
                }
            };
            values[id] = Some(hook(id, &y).unwrap_or(y));
        }
        Ok(values.into_iter().map(|v| v.expect("all computed")).collect())
    }

    /// Index of the last node that reads each node's output.
    fn last_use(&self) -> Vec<NodeId> {
        let mut last = (0..self.nodes().len()).collect::<Vec<_>>();
        for (id, n) in self.nodes().iter().enumerate() {
            for &i in &n.inputs {
                last[i] = last[i].max(id);
            }
        }
        last
    }

    fn bind_inputs(&self, inputs: &[Tensor], values: &mut [Option<Tensor>]) -> Result<()> {
        if inputs.len() != self.inputs().len() {
            crate::bail!(
                "the model takes {} input tensor(s) ({}), got {}",
                self.inputs().len(),
                self.inputs().iter().map(|&i| self.node(i).name.as_str()).collect::<Vec<_>>().join(", "),
                inputs.len()
            );
        }
        // Batches are decoded on the host; they go to the graph's device here, the one place
        // every forward pass (evaluation, attribution, training) goes through.
        let device = self.device();
        for (&id, t) in self.inputs().iter().zip(inputs) {
            let kind = self.node(id).op.kind().input_kind().expect("validated: inputs are Input nodes");
            check_input(&self.node(id).name, kind, t)?;
            values[id] = Some(if t.device() == device { t.shallow_clone() } else { t.f_to_device(device)? });
        }
        Ok(())
    }

    /// Computes one node's output from its inputs.
    pub fn run_node(&self, id: NodeId, xs: &[&Tensor], mode: Mode) -> Result<Tensor> {
        let node = self.node(id);
        self.eval_op(id, node, xs, mode).map_err(|e| Error::Node {
            node: node.name.clone(),
            op: node.op.kind_name().into(),
            message: match e {
                Error::Torch(t) => first_line(&t.to_string()),
                other => other.to_string(),
            },
        })
    }

    fn eval_op(&self, id: NodeId, node: &Node, xs: &[&Tensor], mode: Mode) -> Result<Tensor> {
        node.op.kind().forward(&Ctx { graph: self, id, mode }, xs)
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_string()
}

fn check_input(name: &str, kind: &InputKind, t: &Tensor) -> Result<()> {
    if !kind.accepts(t) {
        crate::bail!(
            "input `{name}` expects {}, got a {:?} tensor of shape {:?}",
            kind.expectation(),
            t.kind(),
            t.size()
        );
    }
    Ok(())
}
