"""Synthetic abdominal CT phantoms with liver and tumor labels, for tests, demos and training."""

from deepliver.phantom.generate import Phantom, make_phantom
from deepliver.phantom.spec import PhantomSpec
from deepliver.phantom.tumors import Tumor

__all__ = ["Phantom", "PhantomSpec", "Tumor", "make_phantom"]
