"""lc: neural-network compression by constrained optimization, with the learning-compression algorithm.

    import lc
    tasks = {lc.Param(net.fc1.weight): (lc.AsVector, lc.ConstraintL0Pruning(kappa=5000))}
    history = lc.Algorithm(net, tasks, lc.geometric_mu(1e-3, 1.1, 30), l_step, evaluate).run()
"""
from ._errors import CompressionError
from .algorithm import Algorithm, StepRecord, geometric_mu
from .callbacks import KeepBest
from ._steps import Additive
from .compression import (AdaptiveQuantization, AffineQuantization, BinaryQuantization, ChannelPenaltyL0,
                          ChannelPenaltyL21, ChannelPruning, Compression,
                          ConstraintL0Pruning, ConstraintL1Pruning, LowRank, PenaltyL0Pruning, PenaltyL1Pruning,
                          PrunedQuantization, RankBudget, RankSelection, ScaledBinaryQuantization, ScaledTernaryQuantization, State,
                          NMPruning, WeightedAdaptiveQuantization, WeightedL0Pruning, WeightedNMPruning, WhitenedLowRank)
from .params import AsGroups, AsIs, AsVector, Param, View, match
from .structure import channel_tasks
from . import measure
from .batchnorm import recalibrate_batchnorm
from .export import export
from .export.onnx import export_onnx
from .compressed import Compressed, nominal_bits
from .storage import load, save

__version__ = "0.1.0"

__all__ = [
    "Algorithm", "StepRecord", "geometric_mu", "KeepBest", "CompressionError",
    "Param", "View", "AsVector", "AsIs", "AsGroups", "match",
    "Compression", "State", "Additive",
    "Compressed", "save", "load", "nominal_bits", "export", "export_onnx", "measure",
    "ConstraintL0Pruning", "ConstraintL1Pruning", "PenaltyL0Pruning", "PenaltyL1Pruning",
    "AdaptiveQuantization", "BinaryQuantization", "ScaledBinaryQuantization", "ScaledTernaryQuantization",
    "AffineQuantization", "PrunedQuantization",
    "LowRank", "RankSelection", "RankBudget", "ChannelPruning", "ChannelPenaltyL0", "ChannelPenaltyL21",
    "channel_tasks", "recalibrate_batchnorm",
    "NMPruning", "WeightedAdaptiveQuantization", "WeightedL0Pruning", "WeightedNMPruning", "WhitenedLowRank",
]
