"""Training derainers: data, losses, the training loop and its checkpoints.

- `data`: `PairDataset` over a pair list and the rain mask M (Eq. 7's target);
- `losses`: the paper's loss (Eq. 7) and its parts;
- `train`: `TrainConfig`, profiles, checkpoints, the loop, ``spanet train`` and torchrun.

May import: `spanetlib.io`, `spanetlib.pipeline`, `spanetlib.synthesis`, `spanetlib.models`,
`spanetlib.evaluation`, `spanetlib.derain`.
"""
