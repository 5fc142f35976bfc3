"""The field's test-folder layouts: detect how a benchmark folder is laid out, list its pairs.

Deraining test sets are distributed the way the code bases that use them read them. Each
layout (:class:`FolderLayout`, all in :data:`LAYOUTS`) is recognised from the folder's
structure, never from the data set's name:

``input-target`` (Restormer, MPRNet, DRSformer, NeRD-Rain)
    ``input/X.png`` is the rain image of ``target/X.png``: the same file stem, the extension
    may differ (``.png``, ``.jpg``...).
``rain100`` (PReNet's Rain100H / Rain100L, csdwren/PReNet; also RCDNet's copies)
    ``rainy/rain-NNN.png`` is the rain image of ``norain-NNN.png`` beside ``rainy/`` (or, in
    some copies, in a ``norain/`` folder beside it).
``rain1400`` (DDN's Rain1400 as DDN and PReNet read it)
    ``rainy_image/K_M.jpg`` (M = 1..14 rain renderings) is a rain image of
    ``ground_truth/K.jpg``: 14 rain images share one clean image.
``spa-data`` (SPA-Data's ``real_test_1000``, SPANet and the papers that test on it)
    ``rain/NNN.png`` is the rain image of ``gt/NNNgt.png`` (``gt/NNN.png`` is also accepted),
    in the given folder or in its ``real_test_1000/`` subfolder.
``rain1200`` (DID-MDN's Rain1200 test set, hezhangsprinter/DID-MDN)
    One file per pair, named by a number (``0.jpg`` ...): the rain image is the **left** half
    and the clean image the right half (DID-MDN's ``pix2pix_val`` loader crops
    ``(0, 0, w/2, h)`` as its input and ``(w/2, 0, w, h)`` as its target). Because a folder
    of numbered photos looks the same from outside, a sample of files is checked: both halves
    must show the same scene (their fine detail correlates) and the left half must be the
    brighter one in most files (rain adds light); clean-left files such as ID-CGAN's Rain800
    are refused rather than silently swapped.
``pair-list`` (SPA-Data's ``real_test_1000.txt``, spanetlib's own exports)
    A pair list read by :func:`spanetlib.io.pairs.read_pair_list`: a list file, or a folder where
    :func:`spanetlib.io.pairs.find_pair_list` finds the test list.

:func:`read_test_folder` tries every layout. One match gives its pairs; none gives a one-line
:class:`~spanetlib.io.errors.InputError` saying what each layout expects. When several match
(SPA-Data's ``testing/`` folder holds both the list and the folders) they must give the same
pairs, else the folder is ambiguous and the error names the layouts to choose from. A rain
image without its clean image is an error listing a few, never dropped; clean images without
a rain image are ignored. Pair names are stable: the rain file's path relative to its folder,
without extension (``rain-001``, ``901_3``, ``000``; for a pair list, relative to the folder
holding all its rain images), so derained outputs can be saved as ``<name>.png``; pairs are in
natural order of their names (``2`` before ``10``), except that a pair list keeps its own
order. Image files are recognised by suffix (:data:`IMAGE_SUFFIXES`); other and hidden files
are ignored.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from spanetlib.io.errors import InputError
from spanetlib.io.files import ImageFormat, natural_key, read_image, read_image_with_format
from spanetlib.io.pairs import find_pair_list, read_pair_list

__all__ = [
    "IMAGE_SUFFIXES",
    "LAYOUTS",
    "FolderLayout",
    "FolderPairs",
    "ImagePair",
    "ImageRef",
    "read_test_folder",
]

#: File suffixes taken as images (case-insensitive); other files are ignored.
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
_HALVES = ("full", "left", "right")
#: Side-by-side check: least correlation of the halves' fine detail for "the same scene".
#: (Measured on scikit-image photos with our synthetic rain, 256 px and more: rain|clean pairs
#: at medium and heavy rain >= 0.23, unrelated halves <= 0.14 in absolute value.)
_SAME_SCENE_MIN_CORRELATION = 0.2
#: Side-by-side check: files sampled (spread over the folder).
_SIDE_BY_SIDE_SAMPLE = 8
_SHOWN = 5  # file names listed in an error message


# --------------------------------------------------------------------------------------------
# Pairs
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageRef:
    """One image of a pair: a whole file, or the left or right half of a side-by-side file.

    Attributes:
        path: the image file.
        half: ``"full"`` (the whole file), ``"left"`` or ``"right"`` (columns ``[0, W/2)`` or
            ``[W/2, W)`` of a file of even width W).
    """

    path: Path
    half: str = "full"

    def __post_init__(self) -> None:
        if self.half not in _HALVES:
            raise ValueError(f"half must be one of {_HALVES}, got {self.half!r}")

    def _columns(self, width: int) -> slice:
        """The columns of this half in a file ``width`` pixels wide."""
        if self.half == "full":
            return slice(None)
        if width % 2:
            raise InputError(f"{self.path}: a side-by-side pair needs an even width, got {width}")
        return slice(0, width // 2) if self.half == "left" else slice(width // 2, None)

    def read(self) -> np.ndarray:
        """The image as H x W x 3 uint8 RGB (W halved for a half).

        Raises:
            InputError: the file is missing or unreadable, or a split file has an odd width.
        """
        image = read_image(self.path)
        return np.ascontiguousarray(image[:, self._columns(image.shape[1])])

    def read_with_format(self) -> tuple[np.ndarray, ImageFormat]:
        """The image and what the file held, halved like `read`.

        As `spanetlib.io.files.read_image_with_format` gives them: 16-bit as float in [0, 1],
        gray and alpha noted in the `ImageFormat` (its alpha plane halved too).

        Raises:
            InputError: as `read`, and for files `read_image_with_format` refuses (smaller
                than 8 x 8, float samples).
        """
        image, fmt = read_image_with_format(self.path)
        columns = self._columns(image.shape[1])
        if fmt.alpha is not None:
            fmt = replace(fmt, alpha=np.ascontiguousarray(fmt.alpha[:, columns]))
        return np.ascontiguousarray(image[:, columns]), fmt

    def __str__(self) -> str:
        return str(self.path) if self.half == "full" else f"{self.path} ({self.half} half)"


@dataclass(frozen=True)
class ImagePair:
    """A rain image and its clean image.

    Attributes:
        name: stable, unique name within its folder (the rain file's relative path without
            extension, POSIX separators); derained outputs are saved as ``<name>.png``.
        rain: the rain image.
        clean: the clean (ground-truth) image.
    """

    name: str
    rain: ImageRef
    clean: ImageRef

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        """``(rain, clean)`` as H x W x 3 uint8 RGB arrays."""
        return self.rain.read(), self.clean.read()


@dataclass(frozen=True)
class FolderLayout:
    """One way the field lays out a test set on disk.

    Attributes:
        name: the layout's name (a key of :data:`LAYOUTS`).
        code_bases: repositories that read test sets this way.
        expected: one line saying what the folder must hold (used in error messages).
        matches: cheap check that a folder has this layout's structure.
        find_pairs: the folder's pairs in name order; raises ``InputError`` when the folder
            has the structure but is incomplete or inconsistent.
    """

    name: str
    code_bases: tuple[str, ...]
    expected: str
    matches: Callable[[Path], bool]
    find_pairs: Callable[[Path], list[ImagePair]]

    def summary(self) -> str:
        """``name (expected; code bases)`` on one line."""
        return f"{self.name} ({self.expected}; {', '.join(self.code_bases)})"


@dataclass(frozen=True)
class FolderPairs:
    """A test folder with its detected layout and its pairs.

    Attributes:
        root: the folder (or list file) that was read.
        layout: the layout that gave the pairs.
        pairs: the pairs, in natural order of their names (a pair list: in list order).
        also_matched: other layouts that matched and gave the same pairs.
    """

    root: Path
    layout: FolderLayout
    pairs: tuple[ImagePair, ...]
    also_matched: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line for logs and reports: folder, layout, code bases and counts."""
        n_clean = len({(p.clean.path, p.clean.half) for p in self.pairs})
        counts = f"{len(self.pairs)} pairs"
        if n_clean != len(self.pairs):
            counts += f" ({n_clean} clean images)"
        also = f"; also matches {', '.join(self.also_matched)}" if self.also_matched else ""
        return (f"{self.root}: layout {self.layout.name!r} ({self.layout.expected}; used by "
                f"{', '.join(self.layout.code_bases)}): {counts}{also}")


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------
def _is_image(path: Path) -> bool:
    """An image file by its suffix; hidden files (``.DS_Store``, ``._1.png``) are not."""
    return (path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
            and path.is_file())


def _images_by_stem(folder: Path) -> dict[str, Path]:
    """Image files of ``folder`` (not recursive) by stem; two files with one stem is an error."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not _is_image(path):
            continue
        if path.stem in found:
            raise InputError(f"{folder}: two images share the name {path.stem!r} "
                             f"({found[path.stem].name} and {path.name}); keep one")
        found[path.stem] = path
    return found


def _listing(names: Iterable[str]) -> str:
    names = sorted(names, key=natural_key)
    shown = ", ".join(names[:_SHOWN])
    return shown + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


def _pair_up(folder: Path, rain: dict[str, Path], clean_for: Callable[[str], Path | None],
             layout: str, expected: str) -> list[ImagePair]:
    """Pairs of every rain image; a rain image with no clean image is an error."""
    if not rain:
        raise InputError(f"{folder}: no rain images ({layout} layout: {expected})")
    pairs, unmatched = [], []
    for stem, path in rain.items():
        clean = clean_for(stem)
        if clean is None:
            unmatched.append(path.name)
        else:
            pairs.append(ImagePair(stem, ImageRef(path), ImageRef(clean)))
    if unmatched:
        raise InputError(f"{folder}: {len(unmatched)} of {len(rain)} rain images have no clean "
                         f"image ({layout} layout: {expected}): {_listing(unmatched)}")
    return sorted(pairs, key=lambda p: natural_key(p.name))


# --------------------------------------------------------------------------------------------
# The layouts
# --------------------------------------------------------------------------------------------
_INPUT_TARGET = "input/X and target/X with the same file stems"


def _input_target_matches(root: Path) -> bool:
    return (root / "input").is_dir() and (root / "target").is_dir()


def _input_target_pairs(root: Path) -> list[ImagePair]:
    targets = _images_by_stem(root / "target")
    return _pair_up(root / "input", _images_by_stem(root / "input"), targets.get,
                    "input-target", _INPUT_TARGET)


_RAIN100 = "rainy/rain-N.png with norain-N.png beside rainy/ (or in norain/)"


def _rain100_matches(root: Path) -> bool:
    rainy = root / "rainy"
    return rainy.is_dir() and any(_is_image(p) and p.stem.startswith("rain-")
                                  for p in rainy.iterdir())


def _rain100_pairs(root: Path) -> list[ImagePair]:
    clean = _images_by_stem(root)
    if (root / "norain").is_dir():
        in_folder = _images_by_stem(root / "norain")
        for stem in set(clean) & set(in_folder):
            raise InputError(f"{root}: {stem} is both beside rainy/ and in norain/; keep one")
        clean.update(in_folder)

    def clean_for(stem: str) -> Path | None:
        return clean.get("no" + stem) if stem.startswith("rain-") else None

    return _pair_up(root / "rainy", _images_by_stem(root / "rainy"), clean_for, "rain100",
                    _RAIN100)


_RAIN1400 = "rainy_image/K_M.jpg with ground_truth/K.jpg (14 rain images per clean one)"
_RAIN1400_STEM = re.compile(r"^(.+)_(\d+)$")


def _rain1400_matches(root: Path) -> bool:
    return (root / "rainy_image").is_dir() and (root / "ground_truth").is_dir()


def _rain1400_pairs(root: Path) -> list[ImagePair]:
    truth = _images_by_stem(root / "ground_truth")

    def clean_for(stem: str) -> Path | None:
        match = _RAIN1400_STEM.match(stem)
        return truth.get(match.group(1)) if match else None

    return _pair_up(root / "rainy_image", _images_by_stem(root / "rainy_image"), clean_for,
                    "rain1400", _RAIN1400)


_SPA = "rain/N.png with gt/Ngt.png, here or in real_test_1000/"


def _spa_base(root: Path) -> Path | None:
    for base in (root, root / "real_test_1000"):
        if (base / "rain").is_dir() and (base / "gt").is_dir():
            return base
    return None


def _spa_matches(root: Path) -> bool:
    return _spa_base(root) is not None


def _spa_pairs(root: Path) -> list[ImagePair]:
    base = _spa_base(root)
    if base is None:
        raise InputError(f"{root} does not have the spa-data layout: expected {_SPA}")
    truth = _images_by_stem(base / "gt")

    def clean_for(stem: str) -> Path | None:
        suffixed, same = truth.get(stem + "gt"), truth.get(stem)
        if suffixed is not None and same is not None:
            raise InputError(f"{base / 'gt'}: both {suffixed.name} and {same.name} could be the "
                             f"clean image of rain/{stem}; keep one")
        return suffixed or same

    return _pair_up(base / "rain", _images_by_stem(base / "rain"), clean_for, "spa-data", _SPA)


_RAIN1200 = ("numbered files N.jpg, each rain (left half) and clean (right half) side by side, "
             "no subfolders")


def _numbered_images(root: Path) -> dict[str, Path] | None:
    """The folder's top-level images if they are all numbered and it has no subfolders."""
    if not root.is_dir():
        return None
    entries = list(root.iterdir())
    if any(p.is_dir() for p in entries):
        return None
    images = [p for p in entries if _is_image(p)]
    if not images or not all(p.stem.isdigit() for p in images):
        return None
    return _images_by_stem(root)


def _sample(paths: list[Path], count: int) -> list[Path]:
    if len(paths) <= count:
        return paths
    idx = np.linspace(0, len(paths) - 1, count).round().astype(int)
    return [paths[i] for i in idx]


def _halves_gray(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    image = read_image(path)
    width = image.shape[1]
    if width % 2 or width < 2:
        return None
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return gray[:, : width // 2], gray[:, width // 2:]


def _detail(gray: np.ndarray) -> np.ndarray:
    """Scene structure at about 32 px across, little affected by rain streaks.

    Thin bright streaks are first removed by a 3 x 3 erosion (for images of 128 px and more,
    where streaks are thin relative to the scene), then the image is area-downsampled and its
    5 x 5 box blur subtracted.
    """
    h, w = gray.shape
    factor = max(1, w // 32)
    if factor >= 4:
        gray = cv2.erode(gray, np.ones((3, 3), np.uint8))
    if factor > 1:
        gray = cv2.resize(gray, (max(1, w // factor), max(1, h // factor)),
                          interpolation=cv2.INTER_AREA)
    return gray - cv2.blur(gray, (5, 5), borderType=cv2.BORDER_REFLECT)


def _same_scene(left: np.ndarray, right: np.ndarray) -> bool:
    a, b = _detail(left).ravel(), _detail(right).ravel()
    if a.std() == 0 or b.std() == 0:
        return False
    return float(np.corrcoef(a, b)[0, 1]) >= _SAME_SCENE_MIN_CORRELATION


def _rain1200_matches(root: Path) -> bool:
    try:
        images = _numbered_images(root)
        if not images:
            return False
        sample = _sample(sorted(images.values(), key=lambda p: natural_key(p.stem)),
                         _SIDE_BY_SIDE_SAMPLE)
        halves = [_halves_gray(p) for p in sample]
    except InputError:
        return False
    same = sum(h is not None and _same_scene(*h) for h in halves)
    return 2 * same > len(sample)


def _image_width(path: Path) -> int:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return int(image.size[0])
    except (OSError, UnidentifiedImageError) as err:
        raise InputError(f"cannot read image: {path}") from err


def _rain1200_pairs(root: Path) -> list[ImagePair]:
    images = _numbered_images(root) or {}
    odd = [p.name for p in images.values() if _image_width(p) % 2]
    if odd:
        raise InputError(f"{root}: {len(odd)} side-by-side files have an odd width, so they do "
                         f"not split into two halves ({_RAIN1200}): {_listing(odd)}")
    paths = sorted(images.values(), key=lambda p: natural_key(p.stem))
    sample = _sample(paths, _SIDE_BY_SIDE_SAMPLE)
    brighter_left = 0
    for path in sample:
        halves = _halves_gray(path)
        brighter_left += halves is not None and float(halves[0].mean() - halves[1].mean()) > 0
    if 2 * brighter_left <= len(sample):
        raise InputError(
            f"{root}: in {len(sample) - brighter_left} of {len(sample)} sampled side-by-side "
            "files the right half is the brighter one; rain adds light, so these look like "
            "clean|rain files (as ID-CGAN's Rain800), not DID-MDN's rain|clean order "
            f"({_RAIN1200}); split them into input/ and target/ folders instead")
    return [ImagePair(p.stem, ImageRef(p, "left"), ImageRef(p, "right")) for p in paths]


_PAIR_LIST = "a pair list file (rain_path clean_path per line), or a folder holding test.txt " \
             "or testing/real_test_1000.txt"


def _pair_list_path(root: Path) -> Path | None:
    if root.is_file():
        return root
    try:
        return find_pair_list(root, "test")
    except InputError:
        return None


def _pair_list_matches(root: Path) -> bool:
    return _pair_list_path(root) is not None


def _pair_list_pairs(root: Path) -> list[ImagePair]:
    path = _pair_list_path(root)
    if path is None:
        raise InputError(f"{root} does not have the pair-list layout: expected {_PAIR_LIST}")
    listed = read_pair_list(path)
    if not listed:
        raise InputError(f"pair list holds no pairs: {path}")
    missing = [str(p) for pair in listed for p in pair if not p.is_file()]
    if missing:
        raise InputError(f"{path}: {len(missing)} listed images do not exist: "
                         f"{_listing(missing)}")
    base = Path(os.path.commonpath([str(rain.parent) for rain, _ in listed]))
    names = [rain.relative_to(base).with_suffix("").as_posix() for rain, _ in listed]
    if len(set(names)) != len(names):  # e.g. a.png and a.jpg: keep the suffixes
        names = [rain.relative_to(base).as_posix() for rain, _ in listed]
    if len(set(names)) != len(names):
        repeated = {n for n in names if names.count(n) > 1}
        raise InputError(f"{path}: rain images listed more than once: {_listing(repeated)}")
    return [ImagePair(name, ImageRef(rain), ImageRef(clean))
            for name, (rain, clean) in zip(names, listed, strict=True)]


#: Every known layout, in the order tried (the first of several agreeing matches names them).
LAYOUTS: dict[str, FolderLayout] = {layout.name: layout for layout in (
    FolderLayout("input-target", ("swz30/Restormer", "swz30/MPRNet", "cschenxiang/DRSformer",
                                  "cschenxiang/NeRD-Rain"),
                 _INPUT_TARGET, _input_target_matches, _input_target_pairs),
    FolderLayout("rain100", ("csdwren/PReNet",), _RAIN100, _rain100_matches, _rain100_pairs),
    FolderLayout("rain1400", ("DDN (Fu et al., CVPR 2017)", "csdwren/PReNet"), _RAIN1400,
                 _rain1400_matches, _rain1400_pairs),
    FolderLayout("spa-data", ("stevewongv/SPANet",), _SPA, _spa_matches, _spa_pairs),
    FolderLayout("rain1200", ("hezhangsprinter/DID-MDN",), _RAIN1200, _rain1200_matches,
                 _rain1200_pairs),
    FolderLayout("pair-list", ("stevewongv/SPANet", "spanetlib"), _PAIR_LIST,
                 _pair_list_matches, _pair_list_pairs),
)}


# --------------------------------------------------------------------------------------------
# Detection
# --------------------------------------------------------------------------------------------
def _pair_keys(pairs: list[ImagePair]) -> set[tuple]:
    return {(p.rain.path.resolve(), p.rain.half, p.clean.path.resolve(), p.clean.half)
            for p in pairs}


def read_test_folder(path: str | os.PathLike, layout: str | None = None) -> FolderPairs:
    """Detect the layout of a test folder and return its (rain, clean) pairs.

    Args:
        path: a test folder (e.g. ``Rain100H/``, ``test/Rain100H/`` of Restormer, SPA-Data's
            ``testing/``) or a pair list file.
        layout: a name of :data:`LAYOUTS` to use instead of detecting (the folder must still
            have that layout's structure).

    Returns:
        The :class:`FolderPairs`: layout, pairs in natural name order (a pair list: in list
        order), and any other layout that matched with the same pairs.

    Raises:
        InputError: the path is missing; the layout name is unknown; no layout matches (the
            message says what each expects); several match with different pairs (ambiguous);
            or the matching layout's folder is incomplete (rain images without a clean image,
            listed files missing, duplicate names...).
    """
    root = Path(path)
    if not root.exists():
        raise InputError(f"test folder not found: {root}")
    if layout is not None:
        if layout not in LAYOUTS:
            raise InputError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
        chosen = LAYOUTS[layout]
        if not chosen.matches(root):
            raise InputError(f"{root} does not have the {chosen.name} layout: expected "
                             f"{chosen.expected}")
        return FolderPairs(root, chosen, tuple(chosen.find_pairs(root)))
    candidates = [lay for lay in LAYOUTS.values() if lay.matches(root)]
    if not candidates:
        raise InputError(f"{root}: no known test-folder layout; expected one of: "
                         + "; ".join(lay.summary() for lay in LAYOUTS.values()))
    if len(candidates) == 1:
        return FolderPairs(root, candidates[0], tuple(candidates[0].find_pairs(root)))
    results = []
    for lay in candidates:
        try:
            results.append(lay.find_pairs(root))
        except InputError as err:
            raise InputError(f"{root} is ambiguous: it matches the layouts "
                             f"{', '.join(c.name for c in candidates)}, and as {lay.name}: "
                             f"{err}; pass the layout to use") from err
    first = _pair_keys(results[0])
    if any(_pair_keys(other) != first for other in results[1:]):
        counts = ", ".join(f"{lay.name} ({len(pairs)} pairs)"
                           for lay, pairs in zip(candidates, results, strict=True))
        raise InputError(f"{root} is ambiguous: it matches the layouts {counts} with different "
                         "pairs; pass the layout to use")
    return FolderPairs(root, candidates[0], tuple(results[0]),
                       also_matched=tuple(c.name for c in candidates[1:]))
