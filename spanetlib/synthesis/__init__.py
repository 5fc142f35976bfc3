"""Synthetic data with its truth: rain streaks, phone-like rain clips, test sets.

- `rain`: rain streak images and whole clips (camera shake, pans, flicker, objects);
- `testsets`: the synthetic, held-out and layout test folders the notebooks score on.

May import: `spanetlib.io`, `spanetlib.pipeline`.
"""
