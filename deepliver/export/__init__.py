"""De-identified training datasets made from the annotation store."""
