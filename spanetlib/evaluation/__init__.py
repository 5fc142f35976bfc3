"""Scoring derainers: metrics under named conventions and the one scoring loop.

- `metrics`: PSNR and SSIM per image, `MetricConvention`;
- `evaluate`: a model over a test folder or pair list (``spanet evaluate``).

May import: `spanetlib.io`, `spanetlib.synthesis`, `spanetlib.models`, `spanetlib.derain`.
"""
