"""The streaming core (no ROS): sliding window over a WindowModel, one world
frame and scale, per-frame results, bounded map and trajectory; the session
every front end drives (`session.Session`) and the settings table
(`settings.SETTINGS`)."""

from .config import StreamConfig
from .interface import Frame, WindowModel, WindowPrediction
from .pipeline import FrameError, ModelOutputError, Streamer
from .result import AlignmentStatus, StreamResult
from .session import Session
from .trajectory import Trajectory
from .world_map import VoxelMap

__all__ = [
    "AlignmentStatus", "Frame", "FrameError", "ModelOutputError", "Session", "StreamConfig", "StreamResult",
    "Streamer", "Trajectory", "VoxelMap", "WindowModel", "WindowPrediction",
]
