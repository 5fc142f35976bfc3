"""Training derainers: data, losses, the training loop and its checkpoints.

- `data`: `PairDataset` over a pair list and the rain mask M (Eq. 7's target);
- `losses`: the paper's loss (Eq. 7) and its parts;
- `config`: `TrainConfig`, the profiles (paper, quick, smoke), config files;
- `checkpoints`: checkpoints on disk (atomic), reading them back, the run-folder check;
- `runtime`: what the loop needs to resume exactly (sampler, RNG state) and to run on
  several ranks;
- `train`: the loop, ``spanet train`` and the torchrun entry (``python -m
  spanetlib.training.train``).

May import: `spanetlib.io`, `spanetlib.pipeline`, `spanetlib.synthesis`, `spanetlib.models`,
`spanetlib.evaluation`, `spanetlib.derain`.
"""
