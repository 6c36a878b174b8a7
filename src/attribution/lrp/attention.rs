//! LRP through transformer layers (AttnLRP / CP-LRP).

use super::LrpConfig;
use crate::error::Result;
use crate::graph::{Graph, NodeId};
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// How relevance passes the attention softmax.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SoftmaxRule {
    /// AttnLRP's softmax rule (input × gradient, ε-stabilised); relevance reaches q and k.
    #[default]
    AttnLrp,
    /// CP-LRP: attention weights are constants; relevance flows only through the values.
    Cp,
    /// z⁺ linearisation of the softmax, without its virtual bias.
    Zplus,
    /// z⁺ linearisation of the softmax, with its virtual bias absorbing relevance.
    ZplusBias,
}

/// Relevance at the inputs of a transformer node.
pub fn propagate(
    graph: &Graph,
    id: NodeId,
    _xs: &[&Tensor],
    _out: &Tensor,
    _r: &Tensor,
    _config: &LrpConfig,
) -> Result<Vec<Option<Tensor>>> {
    let node = graph.node(id);
    crate::bail!("no LRP rule for layer kind `{}`", node.op.kind_name())
}
