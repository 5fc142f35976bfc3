"""Deraining a user's data with a model: photos (tiled), whole clips.

- `images`: `derain_array` and ``spanet derain`` (tiles, precision, formats kept);
- `video`: ``spanet derain-video``: the temporal estimate where the scene is still, SPANet
  where it moves.

May import: `spanetlib.io`, `spanetlib.pipeline`, `spanetlib.models`.
"""
