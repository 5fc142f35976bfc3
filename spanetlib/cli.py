"""The ``spanet`` command: thin wrappers over the library (one function call per subcommand).

Bad input never ends in a traceback: `InputError`, `ValueError` and `OSError` become one line
on stderr and exit status 2, and so does running out of memory (with what to ask for less of);
Ctrl-C exits with 130 after the library has saved its state. A command that skips bad items
and does the rest (``derain``, ``build-dataset``) names them and exits with 1; so does
``build-dataset`` when its train or test list comes out empty.
Warnings (a video that decodes fewer frames than its container says, ...) are one line each,
``spanet COMMAND: warning: ...``.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["build_parser", "main"]

EXIT_BAD_INPUT = 2
EXIT_PARTIAL_FAILURE = 1
EXIT_INTERRUPTED = 130


class _LibraryNames:
    """Choices read from a library module only when argparse checks or lists them.

    Importing the modules that define the names (metrics, layouts) loads torch; reading
    them lazily keeps ``spanet --help`` and the other subcommands fast.
    """

    def __init__(self, module: str, attribute: str) -> None:
        self.module, self.attribute = module, attribute

    def _names(self) -> tuple[str, ...]:
        import importlib

        return tuple(getattr(importlib.import_module(f"spanetlib.{self.module}"),
                             self.attribute))

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __iter__(self):  # noqa: D105
        return iter(self._names())


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _tile(text: str) -> int | str:
    return "auto" if text == "auto" else _positive_int(text)


def _nonnegative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value


def _add_align(p: argparse.ArgumentParser, what: str = "") -> None:
    """The ``--align`` option."""
    p.add_argument("--align", choices=("auto", "on", "off"), default="auto",
                   help=f"camera-motion alignment {what + ' ' if what else ''}(default: auto): "
                   "auto warps only the frames that moved, on warps every frame, off measures "
                   "and reports only")


def _estimate_background(args: argparse.Namespace) -> int:
    from spanetlib.pipeline.clean_images import export_clean_images

    written = export_clean_images(args.input, args.output, frames=args.frames,
                                  start=args.start, align=args.align,
                                  keep_size=args.keep_size, reliability=args.reliability,
                                  overwrite=args.overwrite, progress=True)
    print(written.describe())
    return 0


def _add_estimate_background(sub: argparse._SubParsersAction) -> None:
    """``spanet estimate-background``: its arguments; runs `_estimate_background`."""
    p = sub.add_parser("estimate-background", help="clean image from a rain video (Eqs. 2-4)",
                       description="Clean image of a rain clip: camera motion measured and "
                       "undone where it matters, one image per stable period of the scene "
                       "(OUTPUT_period1.png, ... when the scene changed), cropped to the "
                       "pixels every frame covers.")
    p.add_argument("input", type=Path,
                   help="a video file, a folder of frames, or a folder holding one video")
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="output image (.png, .jpg, .tif, ...)")
    p.add_argument("--frames", type=_positive_int, default=None, help="use N frames (default: all)")
    p.add_argument("--start", type=_nonnegative_int, default=0, help="first frame (default 0)")
    _add_align(p)
    p.add_argument("--keep-size", action="store_true",
                   help="keep the frames' size and write OUTPUT_valid.png marking the pixels "
                   "every frame covers (default: crop to them)")
    p.add_argument("--reliability", action="store_true",
                   help="also write OUTPUT_reliability.png: where rain explains the estimate "
                   "(255) or not (0)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.set_defaults(run=_estimate_background)


def _derain(args: argparse.Namespace) -> int:
    from spanetlib.derain.images import derain_files

    summary = derain_files(args.inputs, args.output, weights=args.weights, device=args.device,
                           tile=args.tile, save_attention=args.save_attention,
                           overwrite=args.overwrite, precision=args.precision)
    print(summary)
    return EXIT_PARTIAL_FAILURE if summary.failed else 0


def _add_derain(sub: argparse._SubParsersAction) -> None:
    """``spanet derain``: its arguments; runs `_derain`."""
    p = sub.add_parser("derain", help="remove rain from photos with SPANet")
    p.add_argument("inputs", nargs="+", type=Path, help="image files or folders")
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    p.add_argument("--weights", default="official",
                   help="official | synthetic | PATH to a checkpoint (default: official)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where the model runs (default: auto, CUDA when available)")
    p.add_argument("--tile", type=_tile, default="auto",
                   help="tile size in pixels for large images, or auto: as few tiles as fit "
                   "in half the memory available now (at most 2048), each as small as that "
                   "count allows (at least 128; smaller images are derained whole) "
                   "(default: auto)")
    p.add_argument("--save-attention", action="store_true", help="also save attention heat maps")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--precision", choices=("fp32", "bf16", "auto"), default="fp32",
                   help="bf16: faster on CPUs with AMX or AVX512-BF16 and on GPUs with bf16, "
                        "refused elsewhere; changes outputs by a few grey levels; auto: bf16 "
                        "where it is faster (default: fp32)")
    p.set_defaults(run=_derain)


def _derain_video(args: argparse.Namespace) -> int:
    from spanetlib.derain.video import derain_video

    summary = derain_video(args.input, args.output, weights=args.weights, align=args.align,
                           window=args.window, tile=args.tile, device=args.device,
                           precision=args.precision, fps=args.fps, start=args.start,
                           frames=args.frames, overwrite=args.overwrite)
    print(summary)
    return 0


def _add_derain_video(sub: argparse._SubParsersAction) -> None:
    """``spanet derain-video``: its arguments; runs `_derain_video`."""
    p = sub.add_parser("derain-video",
                       help="derain a clip: the temporal estimate where the scene is still, "
                       "SPANet where it moves",
                       description="Derain a video file or a folder of frames. Where the "
                       "scene is still, each frame takes the background estimated from the "
                       "frames around it (aligned, per stable period, Eqs. 2-4); where "
                       "something moves or changes, SPANet's output for that frame, blended "
                       "with a soft mask.")
    p.add_argument("input", type=Path,
                   help="a video file, a folder of frames, or a folder holding one video")
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="a video file (.avi or .mkv: lossless FFV1; .mp4: mp4v, lossy; the "
                   "picture only, no sound) or a folder for PNG frames named after the input "
                   "frames (frame_00000.png ... for a video input); a folder output resumes an "
                   "interrupted run")
    p.add_argument("--weights", default="official",
                   help="SPANet weights: official | synthetic | PATH to a checkpoint "
                   "(default: official)")
    p.add_argument("--align", choices=("auto", "on", "off"), default="auto",
                   help="camera alignment: auto warps only frames that moved, on warps every "
                   "frame, off never warps (default: auto)")
    # The library's auto_window (a test keeps the help's numbers equal to it; importing it here
    # would load torch).
    p.add_argument("--window", type=_positive_int, default=None,
                   help="frames around each frame used for its temporal estimate; longer "
                   "clips are processed in overlapping windows (default: 60, fewer for frames "
                   "over 1280 x 720 so the window's frames take at most 168 MiB: 28 at 1080p, "
                   "at least 20)")
    p.add_argument("--frames", type=_positive_int, default=None,
                   help="derain N frames (default: all from --start)")
    p.add_argument("--start", type=_nonnegative_int, default=0,
                   help="first frame to derain (default 0)")
    p.add_argument("--tile", type=_tile, default="auto",
                   help="SPANet tile size for frames it runs on whole, or auto: as few tiles "
                   "as fit in the memory available now, within derain-video's SPANet budget "
                   "(160 MiB at 1080p, more for smaller frames; frames that fit are derained "
                   "whole) (default: auto)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where SPANet runs (default: auto, CUDA when available)")
    p.add_argument("--precision", choices=("fp32", "bf16", "auto"), default="fp32",
                   help="SPANet's precision where derain offers it (default: fp32)")
    p.add_argument("--fps", type=float, default=None,
                   help="frame rate of a video output (default: the input video's, 25 for "
                   "a folder of frames)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing output video, or a frame folder derained with "
                   "other settings (default: refuse; the same settings resume)")
    p.set_defaults(run=_derain_video)


def _build_dataset(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from spanetlib.pipeline.export import export_dataset

    # Skipped entries and scenes not exported are printed as soon as they are known, above
    # the progress bar; an empty split is a warning line (stderr) and exit status 1.
    summary = export_dataset(args.src, args.output, review_file=args.review_file,
                             auto_accept=args.auto_accept, crop=args.crop, stride=args.stride,
                             frames_per_video=args.frames_per_video,
                             test_fraction=args.test_fraction, workers=args.workers,
                             seed=args.seed, align=args.align, unreliable=args.unreliable,
                             overwrite=args.overwrite, scheduler=args.scheduler,
                             report=lambda line: tqdm.write(line, file=sys.stdout))
    for line in summary.scene_reports.values():
        print(line)
    print(summary)
    return EXIT_PARTIAL_FAILURE if summary.failed or summary.empty_splits else 0


def _add_build_dataset(sub: argparse._SubParsersAction) -> None:
    """``spanet build-dataset``: its arguments; runs `_build_dataset`."""
    p = sub.add_parser("build-dataset", help="rain videos -> SPA-Data style training pairs")
    p.add_argument("src", type=Path,
                   help="folder with, per scene, a video file, a frame folder or a folder "
                   "holding one video")
    p.add_argument("-o", "--output", type=Path, required=True, help="dataset folder")
    p.add_argument("--review-file", type=Path, default=None,
                   help="decisions from a review (default: none)")
    p.add_argument("--auto-accept", action="store_true",
                   help="export unreviewed scenes too, accepted by the no-reference quality "
                   "score (frames added until it accepts; with every frame used, the stable "
                   "periods that pass on their own are exported and the others named; none: "
                   "not exported)")
    p.add_argument("--crop", type=_positive_int, default=256, help="patch size (default 256)")
    p.add_argument("--stride", type=_positive_int, default=None,
                   help="patch stride (default: crop)")
    p.add_argument("--frames-per-video", type=_positive_int, default=None,
                   help="paired rain frames exported per scene, spread evenly over them "
                   "(default: every paired frame)")
    p.add_argument("--test-fraction", type=float, default=0.1,
                   help="share of test scenes (default: 0.1)")
    p.add_argument("--workers", type=_positive_int, default=None,
                   help="scenes exported in parallel, in worker processes (default: as many "
                   "as the cores and the available memory allow for the largest scenes)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run each scene as a task on a Dask distributed cluster, e.g. "
                   "tcp://host:8786 (pip install \".[cluster]\"; its workers must see SRC and "
                   "OUTPUT at the same paths) (default: worker processes here)")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/test split (default: 0)")
    _add_align(p, "of the scenes --auto-accept estimates (reviewed scenes keep their review's)")
    p.add_argument("--unreliable", choices=("drop", "mask"), default="drop",
                   help="patches with pixels rain does not explain (a passing car, a scene "
                   "change, outside the valid region) (default: drop): drop those with more "
                   "than 10 %% such pixels, or mask: keep those at least half usable and write "
                   "a mask beside each; either way such pixels are made to agree with the "
                   "clean patch")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a dataset in OUTPUT built with other settings (only its own "
                   "files are removed); the same settings resume without it")
    p.set_defaults(run=_build_dataset)


def _train(args: argparse.Namespace) -> int:
    from spanetlib.training.train import train_command

    overrides = {k: v for k, v in {"batch_size": args.batch_size, "lr": args.lr,
                                   "val_list": args.val}.items() if v is not None}
    result = train_command(profile=args.profile, train_list=args.data, out_dir=args.out,
                           model=args.model, steps=args.steps, resume=args.resume,
                           device=args.device, overwrite=args.overwrite, **overrides)
    print(result)
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    """``spanet train``: its arguments; runs `_train`."""
    p = sub.add_parser("train", help="train SPANet or a baseline")
    p.add_argument("--profile", choices=("smoke", "quick", "paper"), default="quick",
                   help="the settings to start from: smoke (seconds, for tests), quick (a CPU), "
                   "paper (the paper's, for a GPU) (default: quick)")
    p.add_argument("--data", type=Path, required=True,
                   help="a pair list or a dataset folder (ours or SPA-Data's layout)")
    p.add_argument("--val", type=Path, default=None,
                   help="validation pair list or dataset folder (default: none)")
    p.add_argument("--model", default="spanet",
                   help="spanet | ddn | rescan | prenet (default: spanet)")
    p.add_argument("--steps", type=_positive_int, default=None,
                   help="optimizer steps; the learning-rate schedule is scaled to them "
                   "(default: the profile's)")
    p.add_argument("--batch-size", type=_positive_int, default=None,
                   help="pairs per step (default: the profile's)")
    p.add_argument("--lr", type=float, default=None,
                   help="initial learning rate (default: the profile's)")
    p.add_argument("--out", type=Path, default=Path("runs/spanet"),
                   help="run folder: final.pt, last.pt, log.csv (default: runs/spanet)")
    p.add_argument("--resume", action="store_true", help="continue the run in OUT from last.pt")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run in OUT (its final.pt, last.pt and log.csv only)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where to train (default: auto, CUDA when available)")
    p.set_defaults(run=_train)


def _train_synthetic(args: argparse.Namespace) -> int:
    from spanetlib.paper.shipped_weights import train_synthetic_weights

    path = train_synthetic_weights(args.out, steps=args.steps, resume=args.resume,
                                   export_to=args.export, overwrite=args.overwrite)
    print(f"weights -> {path}")
    return 0


def _add_train_synthetic(sub: argparse._SubParsersAction) -> None:
    """``spanet train-synthetic``: its arguments; runs `_train_synthetic`."""
    p = sub.add_parser("train-synthetic",
                       help="make the shipped 'synthetic' weights "
                       "(spanetlib.paper.shipped_weights recipe)")
    p.add_argument("--out", type=Path, default=Path("runs/synthetic"),
                   help="work folder: scenes, dataset, run (default: runs/synthetic)")
    p.add_argument("--steps", type=_positive_int, default=None,
                   help="optimizer steps (default: the recipe's)")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/run/last.pt (checked against the recipe first)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run in OUT/run and the weights file")
    p.add_argument("--export", type=Path, default=None,
                   help="weights file to write (default: OUT/spanet_synthetic.pth)")
    p.set_defaults(run=_train_synthetic)


def _evaluate(args: argparse.Namespace) -> int:
    from spanetlib.evaluation.evaluate import DEFAULT_CONVENTIONS, evaluate_command

    evaluate_command(args.weights, args.test, args.output,
                     conventions=args.convention or DEFAULT_CONVENTIONS,
                     device=args.device, tile=args.tile, max_images=args.max_images,
                     layout=args.layout, save_outputs=args.save_outputs,
                     overwrite=args.overwrite, precision=args.precision)
    return 0


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    """``spanet evaluate``: its arguments; runs `_evaluate`."""
    p = sub.add_parser("evaluate", help="PSNR/SSIM of a model over a test folder or pair list",
                       description="Score a derainer on a test folder in any of the field's "
                       "layouts (detected and reported) or on a pair list.")
    p.add_argument("test", type=Path,
                   help="test folder (input/ + target/, Rain100H/L, Rain1400, SPA-Data, "
                   "Rain1200 side by side) or pair list (rain_path clean_path per line)")
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="output stem: writes STEM.csv, STEM.md and STEM_per_image.csv")
    p.add_argument("--weights", default="official",
                   help="official | synthetic | input (score the rain input) | PATH (a "
                   "spanetlib checkpoint, the authors' SPANet file or PReNet's net_latest.pth)"
                   " (default: official)")
    p.add_argument("--layout", choices=_LibraryNames("io.layouts", "LAYOUTS"), default=None,
                   metavar="NAME", help="use this layout instead of detecting it, one of "
                   "%(choices)s (default: detect)")
    p.add_argument("--convention", nargs="+", default=None,
                   choices=_LibraryNames("evaluation.metrics", "CONVENTIONS"), metavar="NAME",
                   help="metric conventions, of %(choices)s: y-matlab as Restormer's and "
                   "DRSformer's tables, y-matlab-builtin as PReNet's README, spanet-paper as the "
                   "SPANet paper (default: all)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where the model runs (default: auto, CUDA when available)")
    p.add_argument("--tile", type=_positive_int, default=None,
                   help="tile size for large images (default: whole images)")
    p.add_argument("--max-images", type=_positive_int, default=None,
                   help="score only the first N pairs (default: all)")
    p.add_argument("--save-outputs", type=Path, default=None, metavar="DIR",
                   help="also write each derained image as DIR/<pair name>.png, lossless, of "
                   "the input's size (default: not written)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing result files and output images (default: refuse)")
    p.add_argument("--precision", choices=("fp32", "bf16", "auto"), default="fp32",
                   help="compute precision, as for derain: bf16 only where it is faster "
                   "(default: fp32)")
    p.set_defaults(run=_evaluate)


def _reproduce(args: argparse.Namespace) -> int:
    from spanetlib.paper.reproduce import run_notebooks

    summary = run_notebooks(args.profile, out_dir=args.out, only=args.only)
    total = sum(summary.seconds.values())
    print(f"{len(summary.executed)} notebook(s), profile {summary.profile}, {total:.0f} s; "
          f"outputs under {summary.out_dir}")
    return 0


def _add_reproduce(sub: argparse._SubParsersAction) -> None:
    """``spanet reproduce``: its arguments; runs `_reproduce`."""
    p = sub.add_parser("reproduce", help="run the notebooks (tables and figures)")
    p.add_argument("--profile", choices=("smoke", "quick", "paper"), default="quick",
                   help="smoke (minutes, CI), quick (the README's numbers, a CPU), paper (the "
                   "paper's scale, a GPU) (default: quick)")
    p.add_argument("--out", type=Path, default=None,
                   help="output root (default: the checkout's results/ and figures/)")
    p.add_argument("--only", nargs="+", default=None,
                   help="notebook names or prefixes, e.g. 03 (default: all)")
    p.set_defaults(run=_reproduce)


#: The subcommands in ``spanet --help`` order, each a function adding its parser.
_SUBCOMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    _add_estimate_background, _add_derain, _add_derain_video, _add_build_dataset, _add_train,
    _add_train_synthetic, _add_evaluate, _add_reproduce)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``spanet`` and its subcommands."""
    from spanetlib import __version__

    parser = argparse.ArgumentParser(
        prog="spanet", description="SPANet rain removal: real rain/clean pairs from videos, "
        "deraining, training, benchmarks and the paper's tables and figures.")
    parser.add_argument("--version", action="version", version=f"spanetlib {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _SUBCOMMANDS:
        add(sub)
    return parser


def _one_line_warnings(command: str) -> Callable[..., None]:
    """A ``warnings.showwarning`` that prints ``spanet COMMAND: warning: MESSAGE`` as one line."""
    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: object = None, line: str | None = None) -> None:
        text = " ".join(str(message).split())
        print(f"spanet {command}: warning: {text}", file=sys.stderr)

    return show


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``spanet`` console script; returns the exit status."""
    # Large tensors on transparent huge pages: PyTorch reads this once, at its first
    # allocation, and first-touch page faults are otherwise a sizeable share of a CPU forward.
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    # FFmpeg's own messages ("Slice pointer chain broken") would break the one-line output;
    # what they mean reaches the user as a warning or an error of ours.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warnings(args.command)
            return run(args)
    except KeyboardInterrupt:
        print("spanet: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, OSError) as err:  # InputError is a ValueError
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"spanet {args.command}: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (MemoryError, RuntimeError) as err:  # CUDA's OutOfMemoryError is a RuntimeError
        from spanetlib.derain.images import is_out_of_memory

        if not is_out_of_memory(err):
            raise
        reason = " ".join(str(err).split())[:200] or type(err).__name__
        print(f"spanet {args.command}: error: out of memory ({reason}); ask for less: a "
              "smaller --tile, --batch-size or image, or --precision bf16 where supported",
              file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
