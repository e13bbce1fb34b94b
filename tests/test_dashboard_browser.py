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
# the server log and the screenshots: outside test-results/, which pytest-playwright empties
# when a session starts (each pytest-xdist worker is a session of its own, so a worker starting
# late would empty it under a running test)
ARTIFACTS = REPO / "artifacts"
CHROMIUM = Path(os.environ.get("PERFMODEL_CHROMIUM", "/usr/bin/chromium"))  # Debian's
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]
CHART_SVG = '[data-testid="stPlotlyChart"] .main-svg'
STARTUP_TIMEOUT_S = 60
UI_TIMEOUT_MS = 90_000  # first renders import plotly and the model; validation predicts ~200 cases


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
def dashboard_url():
    """`streamlit run app/Home.py` on a free port; stopped (by PID) at the end."""
    ARTIFACTS.mkdir(exist_ok=True)
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p))
    log_path = ARTIFACTS / "streamlit-server.log"
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


SCREENSHOTS = ARTIFACTS / "screenshots"
WIDTH = 820  # the dashboard must be readable at this width (issue 11)
STATUS = '[data-testid="stStatusWidget"]'


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    """A narrow, tall viewport: readable at 820 px, and full-page screenshots do not grow past
    the viewport in Streamlit's layout."""
    return {**browser_context_args, "viewport": {"width": WIDTH, "height": 2600}}


def _open(page, url: str, heading: str):
    from playwright.sync_api import expect

    page.set_default_timeout(UI_TIMEOUT_MS)
    page.goto(url, wait_until="domcontentloaded")
    expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible(
        timeout=UI_TIMEOUT_MS)
    _settled(page)


def _settled(page) -> None:
    """The script run is over: no running-man status widget, no stale elements."""
    from playwright.sync_api import expect

    page.wait_for_timeout(300)  # the status widget appears a moment after an interaction
    expect(page.locator(STATUS)).to_have_count(0, timeout=UI_TIMEOUT_MS)
    expect(page.locator('[data-stale="true"]')).to_have_count(0, timeout=UI_TIMEOUT_MS)


def _metric(page, label: str):
    return (page.locator('[data-testid="stMetric"]').filter(has_text=label)
            .locator('[data-testid="stMetricValue"]').first)


def _card_band(page, label: str) -> tuple[float, float, float]:
    """(value, lo, hi) of a metric card whose band is shown under its value in the same unit
    ("31 ms" over "30–45 ms"); the band must hold the value."""
    from playwright.sync_api import expect

    card = page.locator('[data-testid="stMetric"]').filter(has_text=label).first
    delta = card.locator('[data-testid="stMetricDelta"]')
    expect(delta).to_contain_text("–", timeout=UI_TIMEOUT_MS)
    value = float(card.locator('[data-testid="stMetricValue"]').inner_text().split()[0]
                  .replace(",", ""))
    lo, hi = (float(x.replace(",", "")) for x in delta.inner_text().split()[0].split("–"))
    assert lo <= value <= hi, (label, value, lo, hi)
    return value, lo, hi


def _expect_error_bars(page, chart_title: str) -> None:
    """The chart titled ``chart_title`` draws error bars (80 % bands); waits for plotly,
    which draws a moment after the chart's element appears."""
    page.wait_for_function(
        """t => [...document.querySelectorAll('[data-testid="stPlotlyChart"]')]
            .filter(c => (c.querySelector('.gtitle') || {}).textContent?.includes(t))
            .some(c => c.querySelectorAll('g.errorbar path').length > 0)""",
        arg=chart_title, timeout=UI_TIMEOUT_MS)  # its plot and its title are two SVGs


def _charts(page):
    return page.locator('[data-testid="stPlotlyChart"] .main-svg')


def _set_number(page, label: str, value) -> None:
    from playwright.sync_api import expect

    box = page.get_by_role("spinbutton", name=label, exact=True)
    box.fill(str(value))
    box.press("Enter")
    expect(box).to_have_value(str(value), timeout=UI_TIMEOUT_MS)
    _settled(page)


def _check_page(page, name: str) -> None:
    """No exception, no error box, no metric value cut off; then a screenshot."""
    from playwright.sync_api import expect

    _settled(page)
    page.wait_for_timeout(500)  # layout after the last rerun (fonts, chart sizes)

    expect(page.locator('[data-testid="stException"]')).to_have_count(0)
    expect(page.locator('[data-testid="stAlertContentError"]')).to_have_count(0)
    clipped = page.eval_on_selector_all(
        '[data-testid="stMetricValue"] > div',
        "els => els.filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.textContent)")
    assert not clipped, f"{name}: metric values cut off at {WIDTH} px: {clipped}"
    overflowing = page.eval_on_selector_all(
        '[data-testid="stPlotlyChart"] .main-svg',
        """svgs => svgs.flatMap(svg => {
            const box = svg.getBoundingClientRect();
            return [...svg.querySelectorAll('.gtitle')].filter(t => {
                const b = t.getBoundingClientRect();
                return b.width > 0 && (b.right > box.right + 1 || b.left < box.left - 1);
            }).map(t => t.textContent);
        })""")
    assert not overflowing, f"{name}: chart titles cut off at {WIDTH} px: {overflowing}"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def _changes(page, locator, act) -> None:
    """``act()`` changes the rendered content of ``locator`` (a metric value or a chart)."""
    before = locator.inner_html()
    handle = locator.element_handle()
    act()
    page.wait_for_function("([el, before]) => !el.isConnected || el.innerHTML !== before",
                           arg=[handle, before], timeout=UI_TIMEOUT_MS)


def test_every_page_updates_in_a_real_browser(dashboard_url, page, capsys):
    """One browser session; each page opened once, one widget changed, its numbers and
    chart seen to change, a screenshot saved."""
    from playwright.sync_api import expect

    wait = {"timeout": UI_TIMEOUT_MS}
    # Start: the newcomer's first question is one click away
    _open(page, dashboard_url, "perfmodel · what-if")
    _check_page(page, "0-start")
    page.get_by_role("link", name="Plan search → serve at 20 req/s").click()
    expect(page.get_by_role("heading", name="Plan search and capacity")).to_be_visible(**wait)
    _settled(page)
    expect(_metric(page, "Cheapest")).to_contain_text("×", **wait)
    assert "pl_mode=serve" in page.url
    # ... with the cap it chose and why, banded latencies, and the frontier with its bands
    _card_band(page, "TTFT p90")
    _card_band(page, "TPOT p90")
    assert int(_metric(page, "max_num_seqs").inner_text().replace(",", "")) >= 1
    expect(page.get_by_text("Why this deployment:")).to_be_visible(**wait)
    _expect_error_bars(page, "Throughput vs interactivity")
    _check_page(page, "6b-plans-serve")

    # Training: the global batch moves the step time and its chart
    _open(page, f"{dashboard_url}/training", "Training step")
    step = _metric(page, "Step time")
    chart = _charts(page).first
    before = step.inner_text()
    _changes(page, chart, lambda: _set_number(page, "Global batch", 256))
    expect(step).not_to_have_text(before, **wait)
    assert "tr_global_batch=256" in page.url  # the view is in the link
    _check_page(page, "1-training")

    # Inference: the batch moves TPOT
    _open(page, f"{dashboard_url}/inference", "Inference request")
    tpot = _metric(page, "TPOT")
    before = tpot.inner_text()
    _changes(page, _charts(page).first, lambda: _set_number(page, "Batch", 64))
    expect(tpot).not_to_have_text(before, **wait)
    _check_page(page, "2-inference")
    # ... a shared link to a MoE model with EP: the engine, its version picker, the MoE
    # overlap, and the MoE table and all-to-all split in the view
    _open(page, f"{dashboard_url}/inference?in_model=deepseek-v3&in_device=h200-sxm-141gb"
          "&in_num_gpus=8&in_ep=8&in_attention_dp=8&in_batch=256&in_weight_dtype=fp8_block"
          "&in_engine=vllm"
          "&in_moe_overlap=two_batch", "Inference request")
    expect(page.get_by_text("MoE experts read")).to_be_visible(**wait)
    expect(page.locator('[data-testid="stSelectbox"]').filter(has_text="Engine version")
           ).to_be_visible(**wait)
    _check_page(page, "2b-inference-moe")

    # Serving: the request rate moves throughput, CDFs and timeline
    _open(page, f"{dashboard_url}/serving", "Serving")
    tput = _metric(page, "Output tokens/s")
    before = tput.inner_text()
    _changes(page, _charts(page).nth(1), lambda: _set_number(page, "Request rate (req/s)",
                                                             "16.00"))
    expect(tput).not_to_have_text(before, **wait)
    ttft = page.locator('[data-testid="stMetric"]').filter(has_text="TTFT p90")
    expect(ttft.locator('[data-testid="stMetricDelta"]')).to_contain_text(" – ", **wait)
    _check_page(page, "3-serving")
    # ... a closed loop measured as genai-perf measures it
    _open(page, f"{dashboard_url}/serving?sv_process=closed&sv_concurrency=16"
          "&sv_client=genai-perf&sv_interval_ms=2000", "Serving")
    expect(page.get_by_text("Benchmark client's report — genai-perf")).to_be_visible(**wait)
    _check_page(page, "3c-serving-client")
    _open(page, f"{dashboard_url}/serving", "Serving")
    # ... and an uploaded trace replaces the generated arrivals
    page.locator('[data-testid="stSelectbox"]').filter(has_text="Arrivals").click()
    page.get_by_role("option", name="Trace (CSV upload)").click()
    _settled(page)
    expect(page.get_by_text("Upload a trace CSV")).to_have_count(1, **wait)
    rows = "\n".join(f"{256 + 64 * (i % 5)},{32 + 16 * (i % 3)},{0.05 * i:.2f}"
                     for i in range(80))
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(
        files=[{"name": "trace.csv", "mimeType": "text/csv",
                "buffer": f"prompt_len,output_len,arrival_s\n{rows}\n".encode()}])
    _settled(page)
    expect(_metric(page, "Output tokens/s")).to_be_visible(**wait)
    expect(page.locator('[data-testid="stPlotlyChart"]')).to_have_count(3, **wait)
    # widgets hidden while the upload was missing come back with their values
    expect(page.get_by_role("spinbutton", name="Max batch (sequences)")).to_have_value("256")
    _check_page(page, "3b-serving-trace")

    # Compare: a third scenario joins the shared axes
    _open(page, f"{dashboard_url}/compare", "Compare scenarios")
    _changes(page, _charts(page).nth(1), lambda: _set_number(page, "How many", 3))
    expect(page.get_by_role("tab", name="Scenario C")).to_be_visible(**wait)
    _check_page(page, "4-compare")

    # Sweep: a shorter range redraws the chart
    _open(page, f"{dashboard_url}/sweep", "Sweep a parameter")
    _changes(page, _charts(page).first, lambda: _set_number(page, "To", 32))
    _check_page(page, "5-sweep")

    # Plan search: 405B on 4,096 GPUs; a smaller global batch moves the best step time
    _open(page, f"{dashboard_url}/plans", "Plan search and capacity")
    best = _metric(page, "Step time")
    before = best.inner_text()
    _set_number(page, "Global batch", 1024)
    expect(best).not_to_have_text(before, **wait)
    _card_band(page, "Step time")
    _expect_error_bars(page, "step time vs memory")
    _check_page(page, "6-plans")
    # ... on 8 GPUs nothing fits, and the page says why instead of an empty table
    _set_number(page, "Number of GPUs", 8)
    expect(page.get_by_text("No plan fits:")).to_be_visible(**wait)
    expect(page.get_by_text("GiB per GPU").first).to_be_visible(**wait)
    expect(page.locator('[data-testid="stDataFrame"]')).to_have_count(0, **wait)
    # ... and "train N tokens": days and cost with bands, MFU (6ND), Megatron TFLOP/s,
    # energy, in the framework chosen
    _open(page, f"{dashboard_url}/plans?pl_mode=tokens&pt_model=llama-3-8b&pt_tokens=300B"
          "&pt_devices=h100-sxm5-80gb&pt_max_gpus=512&pt_framework=torchtitan",
          "Plan search and capacity")
    assert "pt_framework=torchtitan" in page.url  # kept: a valid choice of the Framework box
    _card_band(page, "Time")
    _card_band(page, "Cost")
    for label in ("MFU (6ND)", "TFLOP/s per GPU", "Energy"):
        expect(_metric(page, label)).not_to_have_text("—", **wait)
    _expect_error_bars(page, "Time vs cost")
    _check_page(page, "6c-plans-tokens")

    # Calibration: loading the measured points adds the fitted-vs-measured charts
    _open(page, f"{dashboard_url}/calibration", "Calibration profiles")
    page.get_by_text("Load the measured points").click()
    _settled(page)
    expect(page.locator('[data-testid="stPlotlyChart"]')).to_have_count(2, **wait)
    _check_page(page, "7-calibration")
    # ... an uploaded file that is not a profile is one line; a real profile is then shown
    page.get_by_text("Upload a profile").click()
    _settled(page)
    expect(page.get_by_text("Upload a profile JSON to inspect it.")).to_be_visible(**wait)
    dropzones = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
    dropzones.first.set_input_files(files=[{"name": "broken.json", "mimeType": "application/json",
                                            "buffer": b'{"not": "a profile"'}])
    _settled(page)
    error = page.locator('[data-testid="stAlertContentError"]')
    expect(error).to_have_count(1, **wait)
    lines = [ln for ln in error.inner_text().splitlines() if ln.strip()]  # [icon name,] message
    assert lines[-1].startswith("Cannot read this profile") and len(lines) <= 2, lines
    profile = REPO / "calibration" / "b200.reference.json"
    dropzones.first.set_input_files(files=[{"name": profile.name, "mimeType": "application/json",
                                            "buffer": profile.read_bytes()}])
    _settled(page)
    expect(error).to_have_count(0, **wait)
    expect(page.locator('[data-testid="stPlotlyChart"]').first).to_be_visible(**wait)
    _check_page(page, "7b-calibration-upload")

    # Validation: filtering by a source narrows the cases and redraws the scatter
    _open(page, f"{dashboard_url}/validation", "Validation")
    cases = _metric(page, "Cases")
    before = cases.inner_text()
    page.locator('[data-testid="stMultiSelect"]').filter(has_text="Source").click()
    page.get_by_role("option", name="bloom176b").click()
    page.keyboard.press("Escape")
    _settled(page)
    expect(cases).not_to_have_text(before, **wait)
    page.get_by_role("button", name="Predict the 1 shown case now").click()
    _settled(page)
    expect(page.get_by_text("predicted now)")).to_be_visible(**wait)  # the case line
    _check_page(page, "8-validation")
    with capsys.disabled():
        print(f"\ndashboard screenshots ({WIDTH} px wide): {SCREENSHOTS}")
