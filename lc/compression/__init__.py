"""C steps: one module per family. Each class solves one C step exactly (or says in its docstring how close
it gets) and returns a :class:`State` that knows its storage in bits."""
from ._base import Compression, Coupling, State
from ._constraints import WEIGHTS, Boolean, Bound, Constraint, InstanceOf, Integer, Options, OrNone, Real
from .affine import AffineQuantization
from .channels import ChannelPenaltyL0, ChannelPenaltyL21, ChannelPruning
from .lowrank import LowRank, RankBudget, RankSelection
from .pruned_quantization import PrunedQuantization
from .pruning import ConstraintL0Pruning, ConstraintL1Pruning, PenaltyL0Pruning, PenaltyL1Pruning
from .quantization import AdaptiveQuantization, BinaryQuantization, ScaledBinaryQuantization, ScaledTernaryQuantization
from .weighted import NMPruning, WeightedAdaptiveQuantization, WeightedL0Pruning, WeightedNMPruning, WhitenedLowRank

__all__ = ["Compression", "Coupling", "State", "LowRank", "RankSelection", "RankBudget",
           "ConstraintL0Pruning", "ConstraintL1Pruning", "PenaltyL0Pruning", "PenaltyL1Pruning",
           "AdaptiveQuantization", "BinaryQuantization", "ScaledBinaryQuantization", "ScaledTernaryQuantization",
           "AffineQuantization", "PrunedQuantization", "ChannelPruning", "ChannelPenaltyL0", "ChannelPenaltyL21",
           "NMPruning", "WeightedAdaptiveQuantization", "WeightedL0Pruning", "WeightedNMPruning", "WhitenedLowRank",
           # to declare the constraints of a compression's hyperparameters (see Compression)
           "Constraint", "Bound", "WEIGHTS", "Integer", "Real", "Boolean", "Options", "InstanceOf", "OrNone"]
