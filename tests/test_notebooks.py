"""Notebook plumbing: parameters cells match the smoke profile; profiles are complete."""

import ast
import json
from pathlib import Path

import pytest

from spanetlib.paper import profiles
from spanetlib.paper.reproduce import find_notebooks_dir

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"


def parameters_cell(name):
    notebook = json.loads((NOTEBOOKS_DIR / f"{name}.ipynb").read_text())
    cells = [c for c in notebook["cells"]
             if c["cell_type"] == "code" and "parameters" in c["metadata"].get("tags", [])]
    assert len(cells) == 1, f"{name} needs exactly one cell tagged 'parameters'"
    source = "".join(cells[0]["source"])
    values = {}
    for node in ast.parse(source).body:
        assert isinstance(node, ast.Assign), f"{name}: only assignments in the parameters cell"
        values[node.targets[0].id] = ast.literal_eval(node.value)
    return values


@pytest.mark.parametrize("name", [n for n in profiles.NOTEBOOKS
                                  if (NOTEBOOKS_DIR / f"{n}.ipynb").exists()])
def test_parameters_cell_is_the_smoke_profile(name):
    assert parameters_cell(name) == profiles.smoke_defaults(name)


def test_every_notebook_exists_and_is_found():
    assert find_notebooks_dir() == NOTEBOOKS_DIR
    missing = [n for n in profiles.NOTEBOOKS if not (NOTEBOOKS_DIR / f"{n}.ipynb").exists()]
    assert not missing


@pytest.mark.parametrize("profile", profiles.PROFILE_NAMES)
def test_profiles_set_the_same_parameters(profile, tmp_path):
    dirs = profiles.output_dirs(profile, tmp_path, tmp_path)
    for name in profiles.NOTEBOOKS:
        assert set(profiles.notebook_parameters(name, profile, dirs)) == set(
            profiles.smoke_defaults(name)), name


def test_output_dirs_keep_quick_results_in_the_checkout(tmp_path):
    quick = profiles.output_dirs("quick", None, tmp_path)
    assert quick["results_dir"] == str(tmp_path / "results")
    assert quick["figures_dir"] == str(tmp_path / "figures")
    smoke = profiles.output_dirs("smoke", None, tmp_path)
    assert smoke["results_dir"] == str(tmp_path / "results" / "smoke")
    with pytest.raises(ValueError, match="unknown profile"):
        profiles.notebook_parameters(profiles.NOTEBOOKS[0], "huge", quick)


@pytest.mark.parametrize("name", profiles.NOTEBOOKS)
def test_notebooks_call_the_library_for_shared_text(name):
    """The deviations come from `spanetlib.paper.deviations`, the data line from a `describe()`."""
    notebook = json.loads((NOTEBOOKS_DIR / f"{name}.ipynb").read_text())
    code = ["".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code"]
    prose = ["".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "markdown"]
    assert sum(f'render_deviations("{name}", profile)' in src for src in code) == 1
    assert not any("Deviations from the paper" in text for text in prose)
    assert not any(".summary" in src or ".split(" in src for src in code)
    describe = {"07_field": "print(field.describe_folders(folders))",
                "08_video_deraining": "print(video_experiment.describe_clips(clips))",
                }.get(name, "print(dataset.describe())")
    assert any(describe in src for src in code)


def test_field_notebook_parameters():
    """Notebook 07: smoke runs the released loader on the four random PReNet files."""
    smoke = profiles.smoke_defaults("07_field")
    assert smoke["data_root"] is None  # tiny synthetic folders in every layout
    weights = smoke["weights"]
    assert list(weights.values())[:2] == ["synthetic", "official"]
    prenet = [path for path in weights.values() if path.endswith("_random.pth")]
    assert len(prenet) == 4
    for path in prenet:  # relative to notebooks/, where papermill runs
        assert (NOTEBOOKS_DIR / path).resolve().is_file(), path
    from spanetlib.evaluation.metrics import CONVENTIONS
    for profile in profiles.PROFILE_NAMES:
        params = profiles.NOTEBOOK_PARAMETERS["07_field"][profile]
        assert set(params["conventions"]) <= set(CONVENTIONS)
        if profile != "smoke":  # random weights only where the loader is what is tested
            assert not any("random" in path for path in params["weights"].values())
