"""relprune: prune PyTorch models by attribution (LRP), your ``nn.Module`` in, your ``nn.Module`` out.

>>> result = relprune.prune(model, x[:2], data=(x, y), target="macs=0.5")
>>> result.model            # the same class, smaller; train it as before
>>> result.report.after     # parameters, MACs, accuracy after pruning

The work runs in the relprune core, a binary this package carries (see ``relprune._core``).
"""

import torch as _torch

from ._version import check as _check_torch

_check_torch(_torch.__version__)

from ._errors import RelpruneError, TorchVersionError, VerificationError  # noqa: E402
from ._graph_module import GraphModule  # noqa: E402
from ._slice import PrunedMultiheadAttention  # noqa: E402
from .analysis import Comparison, Curve, Study, compare, curve, optimize  # noqa: E402
from .api import prune, scores  # noqa: E402
from .results import Measures, PruneReport, PruneResult, Scores  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "Comparison",
    "Curve",
    "GraphModule",
    "Measures",
    "PruneReport",
    "PrunedMultiheadAttention",
    "PruneResult",
    "RelpruneError",
    "Scores",
    "Study",
    "TorchVersionError",
    "VerificationError",
    "compare",
    "curve",
    "optimize",
    "prune",
    "scores",
]
