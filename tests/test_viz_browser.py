"""The run report in a real browser: headless Chromium loads the page from a file and renders it.

Skips only where Chromium (or its driver, or selenium) is missing AND GANKIT_REQUIRE_BROWSER is unset;
CI sets GANKIT_REQUIRE_BROWSER=1 (.ci/run installs Debian's chromium and chromium-driver), so there a
missing browser fails instead of skipping silently.
"""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gankit.evaluate import evaluate_run
from gankit.train.loop import train
from gankit.viz.report import write_report
from tests.conftest import SHARED
from tests.helpers import tiny_config

_BROWSERS = ("chromium", "chromium-browser", "google-chrome")
_DRIVERS = ("chromedriver", "/usr/lib/chromium/chromedriver", "/usr/bin/chromedriver")


def _find(names: tuple[str, ...]) -> str | None:
    for n in names:
        path = shutil.which(n) or (n if os.path.isabs(n) and os.access(n, os.X_OK) else None)
        if path:
            return path
    return None


def _browser() -> tuple[str, str]:
    """Paths of Chromium and chromedriver, or skip (fail when GANKIT_REQUIRE_BROWSER is set)."""
    browser, driver = _find(_BROWSERS), _find(_DRIVERS)
    try:
        import selenium  # noqa: F401
    except ImportError:
        browser = None
    if browser and driver:
        return browser, driver
    why = "headless Chromium, chromedriver and selenium are needed (apt-get install chromium chromium-driver)"
    if os.environ.get("GANKIT_REQUIRE_BROWSER"):
        pytest.fail(f"GANKIT_REQUIRE_BROWSER is set but {why}")
    pytest.skip(why)


@pytest.fixture(scope="module")
def report_page(tmp_path_factory):
    """A finished tiny run with a judged grid, dFID measured during training (best checkpoint), a
    `gankit eval` result, and its report."""
    cfg = tiny_config("seed002-mlp-mnist", SHARED, steps=6,
                      extra=["train.judge_every=6", "train.eval_every=3", "train.eval_n=64", "train.tensorboard=false"])
    run = tmp_path_factory.mktemp("browser") / "run"
    train(cfg, run, progress=False)
    evaluate_run(run, metrics=("dfid", "classes"), n=64)
    return write_report(run)


def test_report_renders_in_headless_chromium(report_page, tmp_path):
    browser, driver_path = _browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1200,4000", "--allow-file-access-from-files"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # the driver given by path: selenium never looks for (or downloads) one
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)
    try:
        driver.set_page_load_timeout(60)
        driver.get(Path(report_page).resolve().as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete, "
            "w: i.naturalWidth, h: i.naturalHeight, rw: i.getBoundingClientRect().width, "
            "rh: i.getBoundingClientRect().height}))")
        table = driver.execute_script(
            "const t = document.getElementById('metrics'); if (!t) return null; "
            "return {rows: t.tBodies[0].rows.length, head: Array.from(t.tHead.rows[0].cells).map(c => c.textContent),"
            " text: t.innerText}")
        shot = tmp_path / "report.png"
        driver.save_screenshot(str(shot))
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    finally:
        driver.quit()
    assert not errors, errors
    alts = [i["alt"] for i in images]
    for wanted in ("learning curves", "latest samples", "best samples", "evolution", "evolution strip",
                   "judged grid"):
        assert wanted in alts, alts
    for i in images:  # every picture decoded and laid out with a size
        assert i["complete"] and i["w"] > 0 and i["h"] > 0 and i["rw"] > 0 and i["rh"] > 0, i
    assert table is not None and table["rows"] >= 3, table  # gankit eval + two measurements during training
    assert "dfid64-test" in table["head"] and "gankit eval" in table["text"] and "during training" in table["text"]
    # the screenshot shows pictures, not a blank page: many distinct grey levels and some colour (curves)
    px = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert len(np.unique(px.reshape(-1, 3), axis=0)) > 200
    assert ((px.max(-1) - px.min(-1)) > 80).sum() > 1000
