"""Cascade inference around the models: post-processing, lesion measurements and the files a
``deepliver segment`` run leaves behind (label maps, lesion table, summary, overview)."""
