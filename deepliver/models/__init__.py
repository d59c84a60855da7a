"""Segmentation models: cards (``card``), MONAI networks (``networks``), prediction on a CT
volume (``predict``). Import from the submodules: reading a card needs no torch."""
