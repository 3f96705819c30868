"""Synthetic sequences with exact ground truth and the oracle models that
answer from them (the geometry is proven on these; no DA3 weights needed)."""

from .oracle import NoiseConfig, NoisyOracleModel, OracleConfig, OracleHandle, OracleModel
from .rig import RIG_LAYOUTS, RigCamera, RigSequence, load_rig_sequence, make_rig_sequence, write_rig_sequence
from .sequence import SEQUENCES, SyntheticSequence, default_intrinsics, load_sequence, make_sequence, write_sequence

__all__ = [
    "NoiseConfig", "NoisyOracleModel", "OracleConfig", "OracleHandle", "OracleModel",
    "RIG_LAYOUTS", "RigCamera", "RigSequence", "load_rig_sequence", "make_rig_sequence", "write_rig_sequence",
    "SEQUENCES", "SyntheticSequence", "default_intrinsics", "load_sequence", "make_sequence", "write_sequence",
]
