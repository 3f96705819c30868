"""Synthetic sequences with exact ground truth and the oracle models that
answer from them (the geometry is proven on these; no DA3 weights needed)."""

from .oracle import NoiseConfig, NoisyOracleModel, OracleConfig, OracleHandle, OracleModel
from .sequence import SEQUENCES, SyntheticSequence, default_intrinsics, load_sequence, make_sequence, write_sequence

__all__ = [
    "NoiseConfig", "NoisyOracleModel", "OracleConfig", "OracleHandle", "OracleModel",
    "SEQUENCES", "SyntheticSequence", "default_intrinsics", "load_sequence", "make_sequence", "write_sequence",
]
