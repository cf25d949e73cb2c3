"""The course as a learner meets it: JupyterLab in headless Chromium, driven by Playwright.

The student edition (``fcnlib.edition``: no solutions in it) is written to a temporary folder, its
notebooks are given the smoke tier's parameters (papermill's prepare-only mode, nothing executed),
and a JupyterLab server is started on it with the instructor key injected (``FCN_KEY``), so the
unattempted exercises are answered from the key: the student edition and the key are checked to
agree. For every notebook, in course order, the browser runs all cells (Run ▸ Run All Cells), saves,
and the test fails on

* a cell that did not run or ended in an error (read from the saved notebook),
* a widget that does not display ("Error displaying widget", "model not found"),
* a widget whose figure does not redraw when its first control moves;

then the executed notebook of the papermill smoke run (tests/test_notebooks.py) is reopened without a
kernel, and its widgets must display from their saved state.

Needs Chromium (Debian's ``chromium`` package, at /usr/bin/chromium) and the ``playwright`` Python
package (``pip install -e '.[browser]'``); nothing is downloaded at run time. Without them the test is
skipped — except where ``FCN_BROWSER_TESTS=1`` (``.ci/run`` sets it), where it fails.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from fcnlib import edition, reproduce

pytestmark = pytest.mark.browser
CHROMIUM = os.environ.get("FCN_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
REQUIRED = os.environ.get("FCN_BROWSER_TESTS") == "1"
TOKEN = "fcn-course-browser-test"
NOTEBOOKS = reproduce.notebooks()
RUN_TIMEOUT_S = 600      # one notebook, smoke tier, on a busy 2-core machine
WIDGET_ERRORS = ("Error displaying widget", "model not found", "Error rendering output")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]
# JupyterLab settings for the test: every cell in the page (no windowing), no news pop-up
SETTINGS = {"@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
            "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                                "checkForUpdates": False}}


def _unavailable(why: str):
    if REQUIRED:
        pytest.fail(f"{why} (FCN_BROWSER_TESTS=1: the browser test must run)")
    pytest.skip(why)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_server(url: str, proc, log: Path, timeout: float = 120) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=5):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"JupyterLab did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory, smoke_results):
    """(page, base url, student edition root, papermill's executed smoke notebooks) for the tests."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (pip install -e '.[browser]')")
    if not Path(CHROMIUM).exists():
        _unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set FCN_CHROMIUM)")
    import papermill as pm

    root = tmp_path_factory.mktemp("browser")
    student, key = edition.write(root / "edition")
    results = root / "results"
    for nb in sorted((student / "notebooks").glob("*.ipynb")):
        pm.execute_notebook(str(nb), str(nb), prepare_only=True, progress_bar=False, kernel_name="python3",
                            parameters={"tier": "smoke", "device": "cpu", "seed": 0, "results_dir": str(results)})
    settings = root / "settings"
    for name, value in SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(value))
    port = _free_port()
    env = {**os.environ, "FCN_KEY": str(key / "exercise_key"), "PYTHONPATH": str(student),
           "JUPYTER_CONFIG_DIR": str(root / "jupyter-config"), "JUPYTER_RUNTIME_DIR": str(root / "runtime")}
    env.pop("FCN_RESULTS", None)
    log = root / "lab.log"
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
           f"--ServerApp.token={TOKEN}", f"--ServerApp.root_dir={root}", "--allow-root",
           f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={root / 'workspaces'}"]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root)
    url = f"http://127.0.0.1:{port}"
    executed = smoke_results / "notebooks"                       # papermill's run (tests/test_notebooks.py)
    copies = root / "executed"
    if executed.exists():
        shutil.copytree(executed, copies)
    try:
        _wait_for_server(url, proc, log)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            yield page, url, root, student, copies
            browser.close()
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _shut_down_kernels(url: str) -> None:
    with urllib.request.urlopen(f"{url}/api/kernels?token={TOKEN}", timeout=30) as r:
        kernels = json.load(r)
    for k in kernels:
        req = urllib.request.Request(f"{url}/api/kernels/{k['id']}?token={TOKEN}", method="DELETE")
        urllib.request.urlopen(req, timeout=30).close()


def _open(page, url: str, rel: str) -> None:
    page.goto(f"{url}/lab/tree/{rel}?reset&token={TOKEN}")   # reset: no tabs restored from earlier
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)


def _run_all(page) -> float:
    """Run ▸ Run All Cells; return the seconds until the kernel is idle with no cell queued."""
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
    started = ".jp-CodeCell .jp-InputPrompt:has-text('[1]'), .jp-CodeCell .jp-InputPrompt:has-text('[*]')"
    for _ in range(3):   # the menu can be clicked before the notebook panel has focus: then try again
        page.locator(".jp-Notebook .jp-Cell").first.click()
        page.click("li.lm-MenuBar-item:has-text('Run')")
        page.click("li.lm-Menu-item[data-command='runmenu:run-all']")
        try:
            page.wait_for_selector(started, state="attached", timeout=60_000)
            break
        except Exception:
            page.keyboard.press("Escape")
    else:
        page.screenshot(path=str(Path(os.environ.get("FCN_RESULTS", "/tmp")) / "browser-not-started.png"))
        raise AssertionError("Run ▸ Run All Cells did not start the notebook (screenshot in FCN_RESULTS)")
    t0 = time.time()
    calm = 0
    while time.time() - t0 < RUN_TIMEOUT_S:
        time.sleep(1)
        busy = page.get_attribute(".jp-Notebook-ExecutionIndicator", "data-status") != "idle"
        queued = page.locator(".jp-CodeCell .jp-InputPrompt:has-text('[*]')").count()
        calm = 0 if busy or queued else calm + 1
        if calm >= 3:
            return time.time() - t0
    raise AssertionError(f"the notebook did not finish within {RUN_TIMEOUT_S} s")


def _save(page, path: Path) -> nbformat.NotebookNode:
    before = path.stat().st_mtime_ns
    page.keyboard.press("Control+s")
    t0 = time.time()
    while path.stat().st_mtime_ns == before and time.time() - t0 < 30:
        time.sleep(0.3)
    assert path.stat().st_mtime_ns != before, f"{path.name}: saving from the browser did not write the file"
    time.sleep(0.5)
    return nbformat.read(path, as_version=4)


def _widget_errors(page) -> list[str]:
    return [e for e in WIDGET_ERRORS if page.locator(f"text={e}").count()]


def _picture(widget) -> str:
    img = widget.locator("img")
    return img.first.get_attribute("src") if img.count() else ""


def _move_first_control(widget, page) -> str:
    """Move the widget's first control one step; return what was moved."""
    select = widget.locator("select")
    handle = widget.locator(".noUi-handle, .slider-container input, input[type=range]")
    if handle.count():
        handle.first.focus()
        page.keyboard.press("ArrowRight")
        return "slider"
    if select.count():
        options = select.first.locator("option").all_text_contents()
        current = select.first.input_value()
        select.first.select_option(next(o for o in options if o != current))
        return "dropdown"
    raise AssertionError("the widget has no slider or dropdown to move")


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_student_edition_runs_in_jupyterlab(lab, nb):
    page, url, root, student, _ = lab
    _open(page, url, f"edition/student/notebooks/{nb.name}")
    secs = _run_all(page)
    saved = _save(page, student / "notebooks" / nb.name)
    code = [c for c in saved.cells if c.cell_type == "code"]
    not_run = [i for i, c in enumerate(code) if c.get("execution_count") is None]
    errors = [f"cell {i}: {o.get('ename')}: {o.get('evalue')}" for i, c in enumerate(code)
              for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{nb.name} in JupyterLab: {errors}"
    assert not not_run, f"{nb.name} in JupyterLab: code cells {not_run} did not run ({secs:.0f} s)"
    assert not _widget_errors(page), f"{nb.name}: {_widget_errors(page)}"
    text = "\n".join(o.get("text", "") for c in code for o in c.get("outputs", []))
    assert "🔑 Exercise" in text and "not attempted" not in text, \
        f"{nb.name}: every exercise should be answered from the injected key"
    widgets = page.locator(".widget-interact")
    explores = nb.read_text().count("viz.explore(")
    assert widgets.count() >= explores, f"{nb.name}: {widgets.count()} widgets shown for {explores} viz.explore calls"
    for w in range(widgets.count()):
        widget = widgets.nth(w)
        widget.scroll_into_view_if_needed()
        before = _picture(widget)
        assert before, f"{nb.name}: widget {w} shows no figure"
        moved = _move_first_control(widget, page)
        t0 = time.time()
        while _picture(widget) == before and time.time() - t0 < 120:
            time.sleep(0.5)
        assert _picture(widget) not in ("", before), f"{nb.name}: widget {w}'s figure did not redraw ({moved} moved)"
        assert not _widget_errors(page), f"{nb.name}: {_widget_errors(page)} after moving widget {w}"
    _shut_down_kernels(url)


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_executed_notebook_reopens_without_widget_errors(lab, nb):
    """A notebook executed in batch (papermill) shows its widgets from their saved state when reopened."""
    page, url, root, _, copies = lab
    if not (copies / nb.name).exists():
        pytest.skip("run tests/test_notebooks.py first (make test does): no executed smoke notebooks")
    _open(page, url, f"executed/{nb.name}")
    explores = nb.read_text().count("viz.explore(")
    if explores:   # trusted (fcnlib.reproduce signs what it executed) and with the widgets' saved state
        page.wait_for_selector(".widget-interact", timeout=60_000)
    page.wait_for_timeout(2000)
    assert not _widget_errors(page), f"reopened {nb.name}: {_widget_errors(page)}"
    assert page.locator(".widget-interact").count() >= explores, f"reopened {nb.name}: widgets not shown"
    _shut_down_kernels(url)
