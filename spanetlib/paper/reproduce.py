"""Run the paper's notebooks through papermill, one profile at a time (`spanet reproduce`).

Each notebook has a cell tagged ``parameters`` whose values are the ``smoke`` profile; this
module injects the chosen profile's values (``spanetlib.paper.profiles``) and the output folders,
and writes the executed notebook under ``OUT/results/notebooks/`` (papermill writes a hidden
partial file beside it, moved into place by the atomic writer once the notebook has run: a
non-regular file there is refused before any notebook runs, a symlink is written through).
"""

from __future__ import annotations

import datetime
import os
import platform
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from spanetlib.io.errors import InputError
from spanetlib.io.files import atomic_write, atomic_write_text, check_output_path
from spanetlib.paper.profiles import NOTEBOOKS, PROFILE_NAMES, notebook_parameters, output_dirs

__all__ = ["ReproduceSummary", "cpu_name", "find_notebooks_dir", "record_time",
           "run_notebooks", "select_notebooks"]


@dataclass
class ReproduceSummary:
    """What `run_notebooks` did: executed notebooks and seconds per notebook."""

    profile: str
    out_dir: Path
    executed: dict[str, Path] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def find_notebooks_dir() -> Path:
    """The ``notebooks/`` folder of the source checkout this package was installed from.

    Raises:
        InputError: the package is not installed from a checkout (``pip install -e .``).
    """
    folder = Path(__file__).resolve().parents[2] / "notebooks"
    if not folder.is_dir():
        raise InputError(f"notebooks folder not found at {folder}: `spanet reproduce` runs from "
                         "a source checkout installed with `pip install -e .`")
    return folder


def select_notebooks(only: Sequence[str] | None = None) -> list[str]:
    """Notebook names to run, in order; ``only`` items may be full names or prefixes ("03").

    Raises:
        InputError: a name matches no notebook.
    """
    if not only:
        return list(NOTEBOOKS)
    chosen = []
    for item in only:
        item = item.removesuffix(".ipynb")
        hits = [name for name in NOTEBOOKS if name == item or name.startswith(item)
                or name.split("_", 1)[-1] == item]
        if not hits:
            raise InputError(f"unknown notebook {item!r}; choose from: {', '.join(NOTEBOOKS)}")
        chosen.extend(h for h in hits if h not in chosen)
    return [name for name in NOTEBOOKS if name in chosen]


def cpu_name() -> str:
    """The CPU's model name and its widest vector extensions, e.g. ``AMD EPYC (AVX-512, BF16)``.

    Cloud machines often report a bare family name ("AMD EPYC"), which names machines of
    different speeds alike; the extensions (AVX2, AVX-512, its BF16 dot products, AMX) are
    what the fast paths and the timings depend on, so results name them too.
    """
    name, flags = "", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name") and not name:
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    name = name or platform.processor() or platform.machine()
    tags = ["AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else ""]
    tags += [tag for flag, tag in (("avx512_bf16", "BF16"), ("amx_tile", "AMX")) if flag in flags]
    tags = [tag for tag in tags if tag]
    return f"{name} ({', '.join(tags)})" if tags else name


def record_time(results_dir: str | os.PathLike, profile: str, notebook: str, seconds: float
                ) -> Path:
    """Add one notebook's run time to ``results_dir/reproduce_times.csv`` (the README's source).

    The file keeps one row per profile and notebook (a rerun replaces its row): ``profile,
    notebook, seconds, finished`` (UTC) and the machine (``cpu``, ``cores``).

    Returns:
        The CSV's path.
    """
    path = Path(results_dir) / "reproduce_times.csv"
    row = {"profile": profile, "notebook": notebook, "seconds": round(float(seconds), 1),
           "finished": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
           "cpu": cpu_name(), "cores": os.cpu_count()}
    table = pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=list(row))
    table = table[~((table["profile"] == profile) & (table["notebook"] == notebook))]
    table = pd.concat([table, pd.DataFrame([row])], ignore_index=True)
    order = {name: i for i, name in enumerate(NOTEBOOKS)}
    table = table.sort_values(["profile", "notebook"], key=lambda c: c.map(order).fillna(-1)
                              if c.name == "notebook" else c, kind="stable")
    atomic_write_text(path, table.to_csv(index=False))
    return path


def run_notebooks(profile: str = "quick", out_dir: str | os.PathLike | None = None,
                  only: Sequence[str] | None = None, kernel_name: str | None = None,
                  progress: bool = True) -> ReproduceSummary:
    """Execute notebooks 01-08 (`profiles.NOTEBOOKS`) in order with a profile's parameters.

    Args:
        profile: one of ``spanetlib.paper.profiles.PROFILE_NAMES``.
        out_dir: root of the outputs (see `spanetlib.paper.profiles.output_dirs`): tables in
            ``results/``, figures in ``figures/``, executed notebooks in ``results/notebooks/``,
            data and checkpoints in ``results/work/<profile>/``. Default: the source checkout.
        only: names or prefixes of notebooks to run (default: all).
        kernel_name: Jupyter kernel (default: the current Python's ``python3``).
        progress: show papermill's cell progress bar.

    Returns:
        A `ReproduceSummary`.

    Raises:
        InputError: unknown profile or notebook; a notebook failed (its cell error is named).
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    if profile not in PROFILE_NAMES:
        raise InputError(f"unknown profile {profile!r}; choose from: {', '.join(PROFILE_NAMES)}")
    notebooks_dir = find_notebooks_dir()
    names = select_notebooks(only)
    dirs = output_dirs(profile, out_dir, notebooks_dir.parent)
    executed_dir = Path(dirs["results_dir"]) / "notebooks"
    executed_dir.mkdir(parents=True, exist_ok=True)
    summary = ReproduceSummary(profile=profile, out_dir=Path(dirs["results_dir"]))
    for name in names:  # every notebook and output checked before the first one runs
        source = notebooks_dir / f"{name}.ipynb"
        if not source.is_file():
            raise InputError(f"notebook missing: {source}")
        check_output_path(executed_dir / f"{name}.ipynb", overwrite=True)
    for name in names:
        source = notebooks_dir / f"{name}.ipynb"
        params = notebook_parameters(name, profile, dirs)
        target = executed_dir / f"{name}.ipynb"
        partial = executed_dir / f".{name}.running.ipynb"
        print(f"[{profile}] {name} ...", flush=True)
        start = time.perf_counter()
        try:
            papermill.execute_notebook(str(source), str(partial), parameters=params,
                                       cwd=str(notebooks_dir), kernel_name=kernel_name,
                                       progress_bar=progress)
        except PapermillExecutionError as err:
            raise InputError(f"notebook {name} failed in cell {err.exec_count}: {err.ename}: "
                             f"{err.evalue} (partial output: {partial})") from err
        atomic_write(target, lambda tmp, done=partial: shutil.copyfile(done, tmp))
        partial.unlink()
        summary.seconds[name] = time.perf_counter() - start
        summary.executed[name] = target
        record_time(dirs["results_dir"], profile, name, summary.seconds[name])
        print(f"[{profile}] {name} done in {summary.seconds[name]:.0f} s -> {target}", flush=True)
    return summary
