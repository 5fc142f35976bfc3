"""The notebook's review view: an ipywidgets widget over a `review.ReviewSession`.

Notebook 01 shows it (``run_review(session, "interactive")``); the browser test drives it in
JupyterLab. It shows the rain frame and the clean image it would be paired with (its stable
period's estimate, in the frame's own pixels), zoomed crops and the difference map, the
clip's stable periods as a timeline, a reliability overlay (toggle: red where rain does not
explain the estimate, blue where the frame's pixels would not be used in a pair), the camera
motion and the no-reference quality score, with Accept / Reject (add frames) / Skip and the
density buttons; every click goes to the session, which saves it at once.
"""

from __future__ import annotations

import html
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import IPython.display
import ipywidgets as widgets
import numpy as np

from spanetlib.io.files import round_to_uint8, to_uint8, to_unit_float
from spanetlib.pipeline.clip_estimate import ClipEstimate
from spanetlib.pipeline.quality import scene_quality
from spanetlib.pipeline.review import (
    PENDING_STATUSES,
    REVIEW_MODES,
    ReviewSession,
    grow_n,
    reliable_for_frame,
    review_batch,
)
from spanetlib.pipeline.review_images import difference_map, period_strip, reliability_overlay
from spanetlib.pipeline.selection import DENSITIES

__all__ = ["ReviewWidget", "difference_heatmap", "run_review"]


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
    """``|rain - clean|`` (`review_images.difference_map`) as an inferno heat map.

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
    scaled = round_to_uint8(diff / top * 255.0)
    return cv2.cvtColor(cv2.applyColorMap(scaled, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)


class ReviewWidget:
    """An ipywidgets view of a `ReviewSession`: judge one scene's estimate at a time.

    Shows the current scene's rain frame and the clean image it would be paired with side by
    side (resized so the longer side is ``max_display`` pixels: area filter down,
    nearest-pixel up): the estimate of the frame's stable period, in the frame's pixels and
    exposure (`spanetlib.pipeline.clip_estimate.ClipEstimate.clean_for_frame`). Below: the clip's
    stable periods as a timeline (`spanetlib.pipeline.review_images.period_strip`, the shown frame
    marked), a frame slider, a zoomed crop of both (zoom factor and position controls), the
    difference map ``|rain - clean|``, and a toggle for the reliability overlay on the clean image
    (`spanetlib.pipeline.review_images.reliability_overlay`: red where rain does not explain the
    estimate, blue where the frame's pixels would not be used in a pair, a light green elsewhere).
    Then the buttons Accept / Reject (add frames) / Skip, the density (sparse / normal / dense),
    "k of n reviewed", a status line with N, the periods and their p, the measured camera
    motion, and the quality score (`spanetlib.pipeline.quality.scene_quality`) with what the batch
    review would decide.

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
        self._estimate: ClipEstimate | None = None
        self._frames: np.ndarray | None = None

        self.title = widgets.HTML()
        self.progress_label = widgets.Label()
        self.status = widgets.HTML()
        self.motion = widgets.HTML()
        self.quality = widgets.HTML()
        self.frame_label = widgets.HTML()
        self.overlay_legend = widgets.HTML()
        self.message = widgets.HTML()
        self.rain_image = widgets.Image(format="png")
        self.clean_image = widgets.Image(format="png")
        self.rain_zoom = widgets.Image(format="png")
        self.clean_zoom = widgets.Image(format="png")
        self.diff_image = widgets.Image(format="png")
        self.timeline = widgets.Image(format="png")
        self.frame_slider = widgets.IntSlider(value=0, min=0, max=0, description="frame")
        self.overlay_toggle = widgets.ToggleButton(
            value=False, description="reliability overlay", icon="eye",
            tooltip="red: the estimate is not explained by rain there; blue: the frame's "
                    "pixels are not used in a pair (moving objects, outside the valid region)",
            layout=widgets.Layout(width="180px"))
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
        for control in (self.frame_slider, self.zoom_factor, self.zoom_x, self.zoom_y,
                        self.overlay_toggle):
            control.observe(lambda _: self._safe(self._draw), names="value")

        def column(label: str, image: Any) -> Any:
            return widgets.VBox([widgets.Label(label), image])

        self.box = widgets.VBox([
            widgets.HBox([self.title, self.progress_label]),
            widgets.HBox([column("rain frame", self.rain_image),
                          column("clean image of its period", self.clean_image)]),
            column("stable periods (colour: period; light grey: not paired; dark grey: "
                   "transition)", self.timeline),
            widgets.HBox([self.frame_slider, self.frame_label, self.overlay_toggle,
                          self.overlay_legend]),
            widgets.HBox([column("rain (zoom)", self.rain_zoom),
                          column("clean (zoom)", self.clean_zoom),
                          column("|rain - clean|", self.diff_image)]),
            widgets.HBox([self.zoom_factor, self.zoom_x, self.zoom_y]),
            self.density_buttons,
            widgets.HBox([self.accept_button, self.reject_button, self.skip_button]),
            self.status,
            self.motion,
            self.quality,
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
            self.motion.value = self.quality.value = self.frame_label.value = ""
            self.overlay_legend.value = ""
            for b in buttons:
                b.disabled = True
            for image in (self.rain_image, self.clean_image, self.rain_zoom, self.clean_zoom,
                          self.diff_image, self.timeline):
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
        self._describe(entry)
        self._draw()

    def _describe(self, entry: dict[str, Any]) -> None:
        """Status, motion and quality lines of the current estimate."""
        result = self._estimate
        guessed = " (guessed)" if entry["density_guessed"] else ""
        periods = "; ".join(
            f"period {k + 1}: frames {seg.start}-{seg.stop - 1}, p = {seg.percentile:.1f}, "
            f"reliable {100 * seg.reliability.reliable_share:.0f} %"
            for k, seg in enumerate(result.segments)) or "no stable period"
        self.status.value = (f"N = {entry['n']} of {entry['frames_available']} frames, "
                             f"density {entry['density']}{guessed}, status {entry['status']}"
                             f"<br>{html.escape(periods)}; "
                             f"{int((result.membership >= 0).sum())}/{result.n_frames} frames "
                             "paired")
        motion = result.motion
        self.motion.value = (f"camera motion: {motion.model}, largest displacement "
                             f"{float(motion.displacement.max()):.2f} px, "
                             f"{int(result.warped.sum())} frames warped, "
                             f"{int(result.exposed.sum())} exposure-corrected "
                             f"(align {result.mode.name})")
        quality = scene_quality(result)
        verdict, colour = ("accept", "#070") if quality.accept else ("reject", "#b50")
        exhausted = grow_n(entry["n"], entry["density"], entry["frames_available"]) is None
        if not quality.accept and exhausted and quality.accepted_periods:
            # As review_batch does once every frame is used (frames as the reasons count).
            kept = ", ".join(f"{result.segments[k].start}-{result.segments[k].stop - 1}"
                             for k in quality.accepted_periods)
            verdict, colour = f"accept only the period(s) of frames {kept}", "#770"
        why = f": {html.escape('; '.join(quality.reasons))}" if quality.reasons else ""
        self.quality.value = (f"quality score <b style='color:{colour}'>{quality.score:.2f}"
                              f"</b> (the batch review would {verdict}){why}")

    def _count(self, status: str) -> int:
        return sum(e["status"] == status for e in self.session.scenes.values())

    def _clean_for(self, index: int) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
        """The clean image shown beside frame ``index``, and its unreliable / unusable pixels.

        A frame of no period is shown with the nearest period's estimate, all of it unusable.
        """
        result = self._estimate
        h, w = result.shape
        if not result.segments:
            return None, np.zeros((h, w), bool), np.ones((h, w), bool)
        if result.membership[index] >= 0:
            valid = result.valid_for_frame(index)
            return (result.clean_for_frame(index), valid & ~reliable_for_frame(result, index),
                    ~result.usable_mask(index))
        nearest = int(np.argmin([min(abs(seg.start - index), abs(seg.stop - 1 - index))
                                 for seg in result.segments]))
        return (result.clean_for_frame(index, nearest),
                ~result.segments[nearest].reliability.reliable, np.ones((h, w), bool))

    def _draw(self) -> None:
        if self._updating or self._frames is None or self._estimate is None:
            return
        result = self._estimate
        index = min(self.frame_slider.value, len(self._frames) - 1)
        rain_u = to_unit_float(self._frames[index])
        clean, unreliable, unusable = self._clean_for(index)
        seg = int(result.membership[index])
        self.frame_label.value = (f"&nbsp;frame {index}: paired with period {seg + 1}" if seg >= 0
                                  else f"&nbsp;frame {index}: <b>not paired</b> (a transition "
                                  "or content rain does not explain)")
        _show(self.timeline, period_strip(result.membership, result.period,
                                          width=self.max_display, current=index))
        _show(self.rain_image, _fit(rain_u, self.max_display))
        if clean is None:
            for image in (self.clean_image, self.clean_zoom, self.diff_image):
                image.value = b""
            _show(self.rain_zoom, _fit(rain_u, max(16, self.max_display * 2 // 3)))
            return
        clean_u = to_unit_float(clean)
        shown = clean_u
        self.overlay_legend.value = ""
        if self.overlay_toggle.value:
            shown = to_unit_float(reliability_overlay(clean, unreliable, unusable,
                                                 reliable_strength=0.12))
            self.overlay_legend.value = (
                f"&nbsp;<span style='color:#d00'>red</span>: {100 * unreliable.mean():.1f} % "
                f"not explained by rain; <span style='color:#25f'>blue</span>: "
                f"{100 * unusable.mean():.1f} % not used in a pair")
        _show(self.clean_image, _fit(shown, self.max_display))
        h, w = rain_u.shape[:2]
        zoom = int(self.zoom_factor.value)
        ch, cw = max(1, h // zoom), max(1, w // zoom)
        cy = int(round(self.zoom_y.value / 100 * (h - ch)))
        cx = int(round(self.zoom_x.value / 100 * (w - cw)))
        side = max(16, self.max_display * 2 // 3)
        for target, image in ((self.rain_zoom, rain_u), (self.clean_zoom, shown)):
            _show(target, _fit(image[cy:cy + ch, cx:cx + cw], side))
        _show(self.diff_image, _fit(difference_heatmap(rain_u, clean_u), side))

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


def run_review(session: ReviewSession, mode: str, review_file: str | os.PathLike | None = None,
               *, frames_loader: Callable[[Path, int, int], np.ndarray] | None = None,
               progress: bool = True) -> dict[str, str] | ReviewWidget:
    """Review a session: in batch (`spanetlib.pipeline.review.review_batch`) or interactively.

    Args:
        session: the session to review (its file is updated after every decision).
        mode: ``"auto"`` or ``"file"`` (see `review_batch`), or ``"interactive"``.
        review_file: the decisions to replay (mode "file").
        frames_loader: passed to `ReviewSession.estimate`.
        progress: show a tqdm bar (mode "auto").

    Returns:
        Modes "auto" and "file": scene name -> final status. Mode "interactive": the widget
        (display it in the notebook).

    Raises:
        ValueError: unknown mode.
        InputError: see `review_batch`.
    """
    if mode not in REVIEW_MODES:
        raise ValueError(f"mode must be one of {REVIEW_MODES}, got {mode!r}")
    if mode == "interactive":
        return ReviewWidget(session, frames_loader=frames_loader)
    return review_batch(session, mode, review_file, frames_loader=frames_loader,
                        progress=progress)
