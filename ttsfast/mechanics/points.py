"""The tracked points of one beat, by name: the three landmarks and the mid-wall points of the
two LV walls, over the flat ``[..., M, 2]`` array (M = 3 + 2 n_wall) that the trackers move.

The flat layout (landmarks in :data:`LANDMARK_NAMES` order, then the inferoseptal wall from the
septal annulus to the apex, then the anterolateral wall from the lateral annulus) is known here
only; everything else asks for a landmark or a wall by name.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..landmarks import LANDMARK_NAMES

WALLS = ("inferoseptal", "anterolateral")
LEVELS = ("basal", "mid", "apical")
SEGMENTS = tuple(f"{lvl}_{w}" for w in WALLS for lvl in LEVELS)
#: The wall that starts at each annulus.
WALL_OF = {"septal_annulus": "inferoseptal", "lateral_annulus": "anterolateral"}


@dataclass(frozen=True)
class TrackedPoints:
    """Named views of a flat point array ``[..., 3 + 2 n_wall, 2]`` (x, y) px.

    Attributes
    ----------
    array : np.ndarray
        The flat points; any leading shape (``[M, 2]`` one frame, ``[K, M, 2]`` a track).
    n_wall : int
        Points per wall.
    """

    array: np.ndarray
    n_wall: int

    def __post_init__(self) -> None:
        if self.array.ndim < 2 or self.array.shape[-2:] != (len(LANDMARK_NAMES) + 2 * self.n_wall, 2):
            raise ValueError(f"points {self.array.shape} do not hold 3 landmarks and 2 walls of {self.n_wall}")

    @classmethod
    def from_parts(cls, landmarks: np.ndarray, inferoseptal: np.ndarray, anterolateral: np.ndarray) -> "TrackedPoints":
        """Flatten ``landmarks [..., 3, 2]`` and the two walls ``[..., n_wall, 2]``."""
        return cls(np.concatenate([landmarks, inferoseptal, anterolateral], axis=-2), inferoseptal.shape[-2])

    def with_array(self, array: np.ndarray) -> "TrackedPoints":
        """The same layout over another flat array (e.g. corrected or resampled points)."""
        return TrackedPoints(array, self.n_wall)

    @property
    def landmarks(self) -> np.ndarray:
        """``[..., 3, 2]`` view, :data:`LANDMARK_NAMES` order."""
        return self.array[..., :len(LANDMARK_NAMES), :]

    def landmark(self, name: str) -> np.ndarray:
        """``[..., 2]`` view of one landmark."""
        return self.array[..., LANDMARK_NAMES.index(name), :]

    def wall(self, name: str) -> np.ndarray:
        """``[..., n_wall, 2]`` view of one wall, annulus first."""
        start = len(LANDMARK_NAMES) + WALLS.index(name) * self.n_wall
        return self.array[..., start:start + self.n_wall, :]

    @property
    def walls(self) -> dict[str, np.ndarray]:
        """:data:`WALLS` -> ``[..., n_wall, 2]`` views."""
        return {w: self.wall(w) for w in WALLS}

    @property
    def wall_points(self) -> np.ndarray:
        """``[..., 2 n_wall, 2]`` view of the points of both walls."""
        return self.array[..., len(LANDMARK_NAMES):, :]

    def named(self) -> dict[str, np.ndarray]:
        """The three landmarks (``[..., 2]``) and the two walls (``[..., n_wall, 2]``) by name."""
        return {**{n: self.landmark(n) for n in LANDMARK_NAMES}, **self.walls}
