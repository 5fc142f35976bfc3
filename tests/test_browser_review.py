"""A real browser drives notebook 01's review widget: JupyterLab + headless Chromium.

The test runs the notebook's review cells, turns the reliability overlay on (the clean image
is drawn again and the legend appears), then clicks Accept and checks the review file.

Playwright drives Debian's Chromium (never `playwright install`). The screenshot is written to
``figures/review_widget.png`` (the README shows it) only when ``SPANET_UPDATE_FIGURES=1``, so a
test run leaves the checkout as it was. Skips only when /usr/bin/chromium or Playwright is
missing; ``.ci/run`` installs both.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
REPO = Path(__file__).resolve().parents[1]
FIGURE = REPO / "figures" / "review_widget.png"
TIMEOUT_S = 90


def _requirements() -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    pytest.importorskip("playwright.sync_api", reason="Playwright is not installed "
                        "(pip install playwright; never `playwright install`)")


@pytest.fixture
def review_notebook(tmp_path: Path) -> tuple[Path, Path]:
    """Notebook 01's own review cells, run interactively on a tiny synthetic set.

    The cells tagged ``setup`` and ``review`` of ``notebooks/01_dataset_generation.ipynb`` are
    put into one cell after parameters that select ``review_mode = "interactive"`` and send
    every output to ``tmp_path``, so one Shift+Enter runs the notebook's review section.

    Returns:
        (notebook path, review file path): the test clicks Accept and polls the review file.
    """
    import nbformat

    from spanetlib.paper.profiles import smoke_defaults

    source_nb = nbformat.read(REPO / "notebooks" / "01_dataset_generation.ipynb", as_version=4)
    tagged = {tag: c.source for c in source_nb.cells if c.cell_type == "code"
              for tag in c.metadata.get("tags", [])}
    params = dict(smoke_defaults("01_dataset_generation"), review_mode="interactive",
                  results_dir=str(tmp_path / "results"), figures_dir=str(tmp_path / "figures"),
                  work_dir=str(tmp_path / "work"))
    source = "\n".join([*(f"{k} = {v!r}" for k, v in params.items()), tagged["setup"],
                        tagged["review"]])
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# notebook 01: review section"),
                nbformat.v4.new_code_cell(source)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    path = tmp_path / "review_test.ipynb"
    nbformat.write(nb, path)
    return path, tmp_path / "work" / "review.json"


def _api(base: str, token: str, path: str, method: str = "GET") -> object:
    request = urllib.request.Request(f"{base}{path}", method=method,
                                     headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        body = response.read()
    return json.loads(body) if body else None


def _wait_for_server(base: str, token: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"jupyter lab exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            _api(base, token, "/api/status")
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    pytest.fail(f"jupyter lab did not answer in {TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


def _stop_server(server: subprocess.Popen, base: str, token: str) -> None:
    """Shut the kernels down, then the server (its own process group, by its id)."""
    if server.poll() is None:
        try:
            for kernel in _api(base, token, "/api/kernels") or []:
                _api(base, token, f"/api/kernels/{kernel['id']}", method="DELETE")
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)


def _wait_for_review(review_file: Path, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    state: dict = {}
    while time.monotonic() < deadline:
        if review_file.exists():
            state = json.loads(review_file.read_text())
            if any(s["status"] == "accepted" for s in state["scenes"].values()):
                return state
        time.sleep(0.5)
    pytest.fail(f"no scene was accepted within {timeout} s; review file: {state}")


def test_accept_in_browser_writes_review_file(review_notebook, tmp_path, free_port):
    _requirements()
    from playwright.sync_api import sync_playwright

    notebook, review_file = review_notebook
    port, token = free_port, secrets.token_hex(16)
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"),
               JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
               IPYTHONDIR=str(tmp_path / "ipython"))
    log = tmp_path / "jupyter.log"
    shot = tmp_path / "review_widget.png"
    with open(log, "wb") as log_file:
        server = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
             f"--port={port}", f"--ServerApp.token={token}", "--allow-root",
             f"--ServerApp.root_dir={notebook.parent}", "--ServerApp.port_retries=0"],
            cwd=notebook.parent, env=env, stdout=log_file, stderr=subprocess.STDOUT,
            start_new_session=True)
    try:
        _wait_for_server(base, token, server, log)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1500, "height": 1500})
                page.goto(f"{base}/lab/tree/{notebook.name}?token={token}",
                          timeout=TIMEOUT_S * 1000)
                editor = page.locator(".jp-CodeCell .cm-content").first
                editor.wait_for(timeout=TIMEOUT_S * 1000)
                # run only once the kernel is connected: a cell run before that opens the
                # "Select Kernel" dialog and is dropped
                page.locator("#jp-main-statusbar").get_by_text("Idle").first.wait_for(
                    timeout=TIMEOUT_S * 1000)
                dialog = page.locator(".jp-Dialog .jp-mod-accept")
                if dialog.count():
                    dialog.first.click()
                editor.click()
                page.keyboard.press("Shift+Enter")
                accept = page.locator("button.jupyter-button", has_text="Accept").first
                try:
                    accept.wait_for(state="visible", timeout=TIMEOUT_S * 1000)
                except Exception:
                    page.screenshot(path=str(tmp_path / "failure.png"))
                    outputs = page.locator(".jp-OutputArea").all_inner_texts()
                    pytest.fail(f"no Accept button; outputs: {outputs}; page screenshot: "
                                f"{tmp_path / 'failure.png'}; server log:\n"
                                f"{log.read_text()[-3000:]}")
                widget = page.locator(".jp-OutputArea-output .widget-vbox").first
                widget.scroll_into_view_if_needed()
                page.wait_for_timeout(500)  # let the images decode
                # the stable periods timeline, the motion and the quality score are shown
                for text in ("stable periods", "camera motion:", "quality score"):
                    widget.get_by_text(text).first.wait_for(timeout=30_000)
                clean = widget.locator("img").nth(1)
                before = clean.get_attribute("src")
                toggle = page.locator("button.jupyter-button", has_text="reliability overlay")
                toggle.first.click()
                page.locator("button.jupyter-button.mod-active",
                             has_text="reliability overlay").first.wait_for(timeout=30_000)
                widget.get_by_text("not explained by rain").first.wait_for(timeout=30_000)
                page.wait_for_function("([img, old]) => img.src !== old",
                                       arg=[clean.element_handle(), before], timeout=30_000)
                page.wait_for_timeout(500)
                widget.screenshot(path=str(shot))
                accept.click()
                state = _wait_for_review(review_file, 60)
                progress = re.compile(r"^1 of \d+ reviewed")
                page.locator(".widget-label", has_text=progress).first.wait_for(timeout=30_000)
            finally:
                browser.close()
    finally:
        _stop_server(server, base, token)
    accepted = [n for n, s in state["scenes"].items() if s["status"] == "accepted"]
    first = sorted(state["scenes"])[0]
    assert accepted == [first]
    entry = state["scenes"][first]
    assert entry["history"][-1]["decision"] == "accept"
    assert entry["history"][-1]["n"] == entry["n"] >= 2
    assert (review_file.parent / entry["clean_image"]).is_file()
    assert shot.stat().st_size > 5000
    if os.environ.get("SPANET_UPDATE_FIGURES") == "1":
        FIGURE.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, FIGURE)
