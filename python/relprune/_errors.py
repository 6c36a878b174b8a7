"""The package's exceptions."""


class RelpruneError(RuntimeError):
    """The relprune core failed while working (not because of the input), or crashed."""


class TorchVersionError(ImportError, ValueError):
    """The installed torch is not the version the relprune core was built against."""


class VerificationError(RelpruneError):
    """The module handed back would not compute what relprune's pruned graph computes."""
