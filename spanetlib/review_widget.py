"""The notebook's review view: an ipywidgets widget over a `spanetlib.review.ReviewSession`.

Notebook 01 shows it (``run_review(session, "interactive")``); the browser test drives it in
JupyterLab. It shows the rain frame, the estimated clean image, zoomed crops and the difference
map, with Accept / Reject (add frames) / Skip and the density buttons; every click goes to
the session, which saves it at once.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import IPython.display
import ipywidgets as widgets
import numpy as np

from .figures import difference_map
from .fileio import to_uint8
from .review import PENDING_STATUSES, ReviewSession, estimate_in_unit_range
from .selection import DENSITIES

__all__ = ["ReviewWidget", "difference_heatmap"]


def _to_unit(image: np.ndarray) -> np.ndarray:
    """Float32 in [0, 1] from uint8 (/255) or float input (kept)."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if np.issubdtype(image.dtype, np.floating):
        return image.astype(np.float32, copy=False)
    raise TypeError(f"expected uint8 or float images, got dtype {image.dtype}")


def _png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", cv2.cvtColor(to_uint8(image), cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("cannot encode the image as PNG")
    return data.tobytes()


def _fit(image: np.ndarray, max_side: int) -> np.ndarray:
    """Resize so the longer side is ``max_side``: area filter down, nearest (pixels) up."""
    h, w = image.shape[:2]
    scale = max_side / max(h, w)
    if scale == 1.0:
        return image
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    interpolation = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_NEAREST
    return cv2.resize(image, size, interpolation=interpolation)


def _show(widget: Any, image: np.ndarray) -> None:
    widget.value = _png(image)
    widget.width, widget.height = str(image.shape[1]), str(image.shape[0])


def difference_heatmap(rain: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """``|rain - clean|`` (`spanetlib.figures.difference_map`) as an inferno heat map.

    Scaled so that a difference of 64/255 or the 99.5th percentile, whichever is larger, is
    the brightest colour; noise stays dark and streaks glow.

    Args:
        rain: H x W x 3 RGB, uint8 or float in [0, 1].
        clean: the same shape, uint8 or float in [0, 1].

    Returns:
        H x W x 3 uint8 RGB.

    Example:
        >>> clean = np.zeros((4, 4, 3), np.uint8)
        >>> rain = clean.copy()
        >>> rain[0, 0] = 255
        >>> heat = difference_heatmap(rain, clean)
        >>> heat.shape, heat.dtype, bool(heat[0, 0].sum() > heat[3, 3].sum())
        ((4, 4, 3), dtype('uint8'), True)
    """
    diff = difference_map(rain, clean)
    top = max(float(np.percentile(diff, 99.5)), 64.0 / 255.0)
    scaled = (np.clip(diff / top, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(scaled, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)


class ReviewWidget:
    """An ipywidgets view of a `ReviewSession`: judge one scene's estimate at a time.

    Shows the current scene's rain frame and estimated clean image side by side (resized so
    the longer side is ``max_display`` pixels: area filter down, nearest-pixel up), a zoomed
    crop of both (zoom factor and position controls), the difference map ``|rain - clean|``,
    buttons Accept / Reject (add frames) / Skip, the density (sparse / normal / dense),
    "k of n reviewed" and a status line with N and p.

    The handlers `on_accept`, `on_reject`, `on_skip` and `on_density` are plain methods bound
    to the buttons, so code and tests can drive the widget without a browser. After an accept
    or skip the next pending scene is shown; after a reject the same scene is shown again with
    the larger N (the paper's loop), or the next one when its frames are exhausted.

    Args:
        session: the review session.
        max_display: largest side, in pixels, of the displayed images.
        frames_loader: passed to `ReviewSession.estimate` (default: ``video.read_sequence``).
    """

    def __init__(self, session: ReviewSession, max_display: int = 512,
                 frames_loader: Callable[[Path, int, int], np.ndarray] | None = None) -> None:
        if max_display < 16:
            raise ValueError(f"max_display must be >= 16, got {max_display}")
        self.session = session
        self.max_display = int(max_display)
        self.frames_loader = frames_loader
        self.current: str | None = None
        self._updating = False
        self._estimate: Any = None
        self._frames: np.ndarray | None = None

        self.title = widgets.HTML()
        self.progress_label = widgets.Label()
        self.status = widgets.HTML()
        self.message = widgets.HTML()
        self.rain_image = widgets.Image(format="png")
        self.clean_image = widgets.Image(format="png")
        self.rain_zoom = widgets.Image(format="png")
        self.clean_zoom = widgets.Image(format="png")
        self.diff_image = widgets.Image(format="png")
        self.frame_slider = widgets.IntSlider(value=0, min=0, max=0, description="frame")
        self.zoom_factor = widgets.Dropdown(options=[2, 3, 4], value=3, description="zoom",
                                            layout=widgets.Layout(width="150px"))
        self.zoom_x = widgets.IntSlider(value=50, min=0, max=100, description="x %")
        self.zoom_y = widgets.IntSlider(value=50, min=0, max=100, description="y %")
        self.accept_button = widgets.Button(description="Accept", button_style="success",
                                            tooltip="the estimate is clean: use it")
        self.reject_button = widgets.Button(description="Reject (add frames)",
                                            button_style="warning",
                                            tooltip="rain remains: estimate again with more "
                                                    "frames",
                                            layout=widgets.Layout(width="200px"))
        self.skip_button = widgets.Button(description="Skip", tooltip="leave this scene out")
        self.density_buttons = widgets.ToggleButtons(options=list(DENSITIES),
                                                     description="density")

        self.accept_button.on_click(lambda _: self._safe(self.on_accept))
        self.reject_button.on_click(lambda _: self._safe(self.on_reject))
        self.skip_button.on_click(lambda _: self._safe(self.on_skip))
        self.density_buttons.observe(self._density_changed, names="value")
        for control in (self.frame_slider, self.zoom_factor, self.zoom_x, self.zoom_y):
            control.observe(lambda _: self._safe(self._draw), names="value")

        def column(label: str, image: Any) -> Any:
            return widgets.VBox([widgets.Label(label), image])

        self.box = widgets.VBox([
            widgets.HBox([self.title, self.progress_label]),
            widgets.HBox([column("rain frame", self.rain_image),
                          column("estimated clean image", self.clean_image)]),
            widgets.HBox([self.frame_slider]),
            widgets.HBox([column("rain (zoom)", self.rain_zoom),
                          column("clean (zoom)", self.clean_zoom),
                          column("|rain - clean|", self.diff_image)]),
            widgets.HBox([self.zoom_factor, self.zoom_x, self.zoom_y]),
            self.density_buttons,
            widgets.HBox([self.accept_button, self.reject_button, self.skip_button]),
            self.status,
            self.message,
        ])
        self.show(session.next_pending())

    # ---------------------------------------------------------------- display
    def display(self) -> None:
        """Display the widget in the notebook."""
        IPython.display.display(self.box)

    def _ipython_display_(self) -> None:
        self.display()

    def _safe(self, action: Callable[[], Any]) -> None:
        try:
            action()
        except Exception as err:  # shown in the widget; the kernel log has no console
            self.message.value = f"<b style='color:#b00'>{html.escape(str(err))}</b>"

    def show(self, name: str | None) -> None:
        """Show scene ``name`` (None: the "all reviewed" state)."""
        self.current = name
        self.message.value = ""
        done, total = self.session.progress()
        self.progress_label.value = f"{done} of {total} reviewed"
        buttons = (self.accept_button, self.reject_button, self.skip_button,
                   self.density_buttons)
        if name is None:
            self._estimate = self._frames = None
            self.title.value = "<b>All scenes reviewed</b>"
            self.status.value = (f"All {total} scenes are reviewed "
                                 f"({self._count('accepted')} accepted).")
            for b in buttons:
                b.disabled = True
            for image in (self.rain_image, self.clean_image, self.rain_zoom, self.clean_zoom,
                          self.diff_image):
                image.value = b""
            return
        for b in buttons:
            b.disabled = False
        entry = self.session.scene(name)
        self._updating = True
        try:
            self.density_buttons.value = entry["density"]
        finally:
            self._updating = False
        self._estimate = self.session.estimate(name, self.frames_loader)
        self._frames = self.session.frames(name, self.frames_loader)
        self._updating = True
        try:
            self.frame_slider.max = len(self._frames) - 1
            self.frame_slider.value = min(self.frame_slider.value, len(self._frames) - 1)
        finally:
            self._updating = False
        self.title.value = f"<b>{html.escape(name)}</b>&nbsp;&nbsp;"
        guessed = " (guessed)" if entry["density_guessed"] else ""
        self.status.value = (f"N = {entry['n']} of {entry['frames_available']} frames, "
                             f"p = {self._estimate.percentile:.1f}, density "
                             f"{entry['density']}{guessed}, status {entry['status']}")
        self._draw()

    def _count(self, status: str) -> int:
        return sum(e["status"] == status for e in self.session.scenes.values())

    def _draw(self) -> None:
        if self._updating or self._frames is None or self._estimate is None:
            return
        rain = self._frames[min(self.frame_slider.value, len(self._frames) - 1)]
        clean = estimate_in_unit_range(self._estimate.image, self._frames)
        rain_u = _to_unit(rain)
        _show(self.rain_image, _fit(rain_u, self.max_display))
        _show(self.clean_image, _fit(clean, self.max_display))
        h, w = rain.shape[:2]
        zoom = int(self.zoom_factor.value)
        ch, cw = max(1, h // zoom), max(1, w // zoom)
        cy = int(round(self.zoom_y.value / 100 * (h - ch)))
        cx = int(round(self.zoom_x.value / 100 * (w - cw)))
        side = max(16, self.max_display * 2 // 3)
        for target, image in ((self.rain_zoom, rain_u), (self.clean_zoom, clean)):
            _show(target, _fit(image[cy:cy + ch, cx:cx + cw], side))
        _show(self.diff_image, _fit(difference_heatmap(rain_u, clean), side))

    # ---------------------------------------------------------------- handlers
    def _require_scene(self) -> str:
        if self.current is None:
            raise ValueError("no scene to review: all scenes are reviewed")
        return self.current

    def on_accept(self) -> None:
        """Accept the current estimate (writes the clean image) and show the next scene."""
        name = self._require_scene()
        estimate = self.session.estimate(name, self.frames_loader)
        self.session.accept(name, estimate)
        self.show(self.session.next_pending(after=name))

    def on_reject(self) -> None:
        """Reject: add frames and show the scene again (or the next one when exhausted)."""
        name = self._require_scene()
        state = self.session.reject(name)
        self.show(name if state["status"] in PENDING_STATUSES else self.session.next_pending(name))

    def on_skip(self) -> None:
        """Skip the current scene and show the next one."""
        name = self._require_scene()
        self.session.skip(name)
        self.show(self.session.next_pending(after=name))

    def on_density(self, value: str) -> None:
        """Set the current scene's density (resets N before any decision) and redraw."""
        name = self._require_scene()
        self.session.set_density(name, value)
        self.show(name)

    def _density_changed(self, change: dict[str, Any]) -> None:
        if self._updating or self.current is None:
            return
        if change["new"] != self.session.scene(self.current)["density"]:
            self._safe(lambda: self.on_density(change["new"]))
