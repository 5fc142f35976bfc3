"""What the notebooks call: the paper's experiments, tables, figures and their reproduction.

Runs and seeds (`runs`), Tables 1-4 (`tables`), the paper's claims as paired tests
(`claims`), figures and their data (`figures`, `figure_data`), deviations from the paper
(`deviations`), the released-weights comparison (`released_weights`), the shipped weights'
recipe (`shipped_weights`), the notebooks' data sets (`datasets`), profiles
(`profiles`), ``spanet reproduce`` (`reproduce`) and the README generator (`readme`).

May import: every layer below (`io`, `pipeline`, `synthesis`, `models`, `training`,
`evaluation`, `derain`).
"""
