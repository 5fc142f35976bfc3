import numpy as np
import pytest

from spanetlib import experiments, figures
from spanetlib.fileio import read_image
from spanetlib.testsets import make_table1_videos


@pytest.fixture(scope="module")
def videos():
    return make_table1_videos(2, 16, (32, 40), seed=3, densities=("normal", "dense"))


def test_table1_rows_and_ranking(videos):
    per_video, summary = experiments.run_table1(videos, experiments.table1_methods(20))
    assert list(summary["method"]) == ["Rain input", "Mean", "Median", "Mode filter (Eq. 2)",
                                       "Robust PCA (IALM)", "Ours (Eqs. 2-4)"]
    assert len(per_video) == 2 * 6
    psnr = summary.set_index("method")["psnr"]
    # every background estimate beats the rain input, and ours beats the mean clearly
    assert (psnr.drop("Rain input") > psnr["Rain input"] + 5).all()
    assert psnr["Ours (Eqs. 2-4)"] > psnr["Mean"] + 3


def test_table1_methods_sets_rpca_budget():
    from functools import partial

    methods = experiments.table1_methods(7)
    rpca = methods["Robust PCA (IALM)"]
    assert isinstance(rpca, partial) and rpca.keywords == {"max_iter": 7}


def test_table1_images_have_captions_for_every_estimate(videos):
    images, captions = experiments.table1_images(videos[0], {"Median": lambda f: np.median(f, 0)})
    assert list(images) == ["Rain frame", "Median", "Ground truth"]
    assert set(captions) == {"Rain frame", "Median"} and captions["Median"].endswith("dB")


def test_pick_rainy_pixel_finds_the_target_share():
    mask = np.zeros((10, 3, 4), bool)
    mask[:5, 2, 1] = True  # exactly half
    mask[:, 0, 0] = True
    assert experiments.pick_rainy_pixel(mask, 0.5) == (2, 1)


def test_luminance_bt601():
    assert experiments.luminance(np.array([255, 255, 255])) == pytest.approx(255.0, rel=1e-6)
    assert experiments.luminance(np.array([0, 255, 0])) == pytest.approx(0.587 * 255)


def test_figures_write_pngs(tmp_path):
    rng = np.random.default_rng(0)
    figures.plot_pixel_profile(rng.random(20) * 255, rng.random(20) < 0.4, 90.0, 91.0,
                               path=tmp_path / "f2.png")
    figures.plot_percentile_ranges(rng.random((6, 6)) * 40, 60 + rng.random((6, 6)) * 40, 50.0,
                                   path=tmp_path / "f3.png")
    figures.plot_image_grid([{"a": rng.random((8, 9, 3)), "b": rng.random((8, 9))}] * 2,
                            captions={"a": "x"}, crop=(1, 1, 4, 4), path=tmp_path / "f4.png")
    figures.plot_attention_maps([{"rain": rng.random((8, 9, 3)), "A": rng.random((8, 9))}],
                                path=tmp_path / "f7.png")
    import pandas as pd

    log = pd.DataFrame({"step": range(1, 31), "loss": np.linspace(1, 0.1, 30)})
    figures.plot_training_curves({"run": log}, columns=("loss", "absent"), path=tmp_path / "c.png")
    for name in ("f2", "f3", "f4", "f7", "c"):
        assert read_image(tmp_path / f"{name}.png").shape[2] == 3


def test_figure_argument_errors():
    with pytest.raises(ValueError, match=r"two \(N,\) arrays"):
        figures.plot_pixel_profile(np.zeros(3), np.zeros(4, bool), 0.0)
    with pytest.raises(ValueError, match="at least one image"):
        figures.plot_image_grid({})
    with pytest.raises(ValueError, match="differ in shape"):
        figures.difference_map(np.zeros((2, 2, 3)), np.zeros((2, 3, 3)))
    import pandas as pd

    with pytest.raises(ValueError, match="none of the requested columns"):
        figures.plot_training_curves({"r": pd.DataFrame({"step": [1]})}, columns=("loss",))


def test_prepare_dirs_creates_and_returns_paths(tmp_path):
    out = experiments.prepare_dirs(str(tmp_path / "r"), tmp_path / "f" / "g")
    assert out == (tmp_path / "r", tmp_path / "f" / "g")
    assert all(path.is_dir() for path in out)
