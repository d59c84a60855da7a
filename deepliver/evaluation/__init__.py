"""Evaluation: voxel, surface and lesion metrics, pairing of predictions with truth, reports."""
