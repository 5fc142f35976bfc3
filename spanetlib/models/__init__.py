"""Derainers: SPANet and its Table 4 variants, the baselines, and the authors' weights."""
