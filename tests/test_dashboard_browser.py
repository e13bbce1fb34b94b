"""End-to-end: the dashboard served by `streamlit run`, driven in a real headless Chromium.

Needs Debian's /usr/bin/chromium (or the browser named by PERFMODEL_CHROMIUM; `playwright
install` cannot download here). Without it the test is skipped, or FAILS when
PERFMODEL_REQUIRE_BROWSER=1 (.ci/run sets it, so a missing browser never passes silently).
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "test-results"
CHROMIUM = Path(os.environ.get("PERFMODEL_CHROMIUM", "/usr/bin/chromium"))  # Debian's
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]
CHART_SVG = '[data-testid="stPlotlyChart"] .main-svg'
STARTUP_TIMEOUT_S = 60
UI_TIMEOUT_MS = 30_000  # first render imports plotly and the model; CI machines are slow


def _unavailable(reason: str, module_level: bool = False) -> None:
    if os.environ.get("PERFMODEL_REQUIRE_BROWSER") == "1":
        pytest.fail(f"PERFMODEL_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=module_level)


if importlib.util.find_spec("pytest_playwright") is None:
    _unavailable("pytest-playwright is not installed (pip install -e '.[dev]')",
                 module_level=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """pytest-playwright's launch arguments, pointed at the system Chromium."""
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    return {**browser_type_launch_args, "executable_path": str(CHROMIUM),
            "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    # A tall viewport: full-page screenshots do not grow past it in Streamlit's layout.
    return {**browser_context_args, "viewport": {"width": 1500, "height": 1900}}


@pytest.fixture(scope="session")
def dashboard_url(delete_output_dir):
    """`streamlit run app/Home.py` on a free port; stopped (by PID) at the end.

    Requests pytest-playwright's ``delete_output_dir`` (it empties test-results/ once per
    session) so that the server log and screenshot written here come after it.
    """
    RESULTS.mkdir(exist_ok=True)
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p))
    log_path = RESULTS / "streamlit-server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app/Home.py",
             "--server.headless", "true", "--server.address", "127.0.0.1",
             "--server.port", str(port), "--browser.gatherUsageStats", "false",
             # edits to the package while the suite runs must not pop "File change" up
             "--server.fileWatcherType", "none"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"streamlit exited with {proc.returncode}:\n"
                            f"{log_path.read_text()}", pytrace=False)
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                    if resp.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"streamlit not healthy after {STARTUP_TIMEOUT_S} s:\n"
                            f"{log_path.read_text()}", pytrace=False)
            time.sleep(0.25)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_dashboard_updates_in_a_real_browser(dashboard_url, page):
    from playwright.sync_api import expect

    wait = {"timeout": UI_TIMEOUT_MS}
    page.set_default_timeout(UI_TIMEOUT_MS)
    page.goto(dashboard_url, wait_until="domcontentloaded")
    expect(page.get_by_role("heading", name="perfmodel · what-if")).to_be_visible(**wait)
    page.wait_for_selector(CHART_SVG)
    expect(page.locator('[data-testid="stPlotlyChart"]')).to_have_count(3, **wait)
    status = page.locator('[data-testid="stStatusWidget"]')
    expect(status).to_have_count(0, **wait)

    step = (page.locator('[data-testid="stMetric"]').filter(has_text="Step time")
            .locator('[data-testid="stMetricValue"]'))
    time_title = page.locator('[data-testid="stPlotlyChart"] .gtitle').first
    expect(time_title).to_contain_text("Step time breakdown", **wait)
    step_before, title_before = step.inner_text(), time_title.text_content()

    batch = page.get_by_role("spinbutton", name="Global batch")
    batch.fill("256")
    batch.press("Enter")
    expect(batch).to_have_value("256", **wait)
    expect(step).not_to_have_text(step_before, **wait)
    expect(time_title).not_to_have_text(title_before, **wait)
    expect(status).to_have_count(0, **wait)
    # the chart title repeats the new step time: chart and metric come from one prediction
    expect(time_title).to_contain_text(step.inner_text(), **wait)
    expect(page.locator('[data-testid="stException"]')).to_have_count(0)
    expect(page.locator('[data-testid="stAlertContentError"]')).to_have_count(0)

    page.screenshot(path=str(RESULTS / "dashboard-training.png"), full_page=True)
