"""DeepLiver core: liver and liver tumor CT work that does not need 3D Slicer."""

from deepliver.errors import DeepLiverError
from deepliver.volume import Box, Grid, GridMismatchError, Volume

__all__ = ["Box", "DeepLiverError", "Grid", "GridMismatchError", "Volume"]
__version__ = "0.1.0"
