"""The app in a real browser: headless Chromium signs in, uploads an image, sees the answer.

``streamlit run ui/main.py`` is started on a free loopback port against the
served model; Debian's chromium and chromedriver drive it (``make chromium``
installs them). Screenshots of every page go to ``docs/screenshots/``.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import time

import pytest
import requests

from tests.conftest import ROOT
from tests.ui.conftest import ADMIN, free_port

pytestmark = pytest.mark.integration
SCREENSHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def streamlit_url(served_app, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("streamlit") / "streamlit.log"
    env = {**os.environ, **served_app.env, "CLEARSIGHT_UI_METRICS_PORT": str(free_port())}
    with log.open("w") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                str(ROOT / "ui" / "main.py"),
                "--server.port",
                str(port),
                "--server.address",
                "127.0.0.1",
                "--server.headless",
                "true",
                "--browser.gatherUsageStats",
                "false",
                "--client.toolbarMode",
                "minimal",
            ],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/_stcore/health", timeout=1).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        assert process.poll() is None, log.read_text()
        time.sleep(0.5)
    else:
        pytest.fail(f"streamlit did not start in 60 s:\n{log.read_text()}")
    yield url
    os.killpg(process.pid, 15)
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.fail("chromium and chromedriver are needed: make chromium")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def wait_for_text(driver, text: str, timeout: float = 90) -> None:
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = driver.find_element(By.TAG_NAME, "body").text
        if text in body:
            return
        time.sleep(0.3)
    pytest.fail(f"{text!r} never appeared; the page says:\n{body[-3000:]}")


def settle(driver, timeout: float = 60) -> None:
    """Wait until Streamlit has finished running the script (no 'Running...' status)."""
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + timeout
    time.sleep(0.5)
    while time.monotonic() < deadline:
        if not driver.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"]'):
            time.sleep(0.5)  # let charts draw
            return
        time.sleep(0.3)


def shot(driver, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    png = base64.b64decode(driver.get_screenshot_as_base64())
    (SCREENSHOTS / f"{name}.png").write_bytes(png)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def open_page(driver, title: str) -> None:
    from selenium.webdriver.common.by import By

    links = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebarNav"] a')
    (link,) = [a for a in links if a.text.strip().endswith(title)]
    link.click()
    settle(driver)


def test_sign_in_upload_and_see_the_top_k_answer(streamlit_url, browser, digits_dir, served_app):
    from selenium.webdriver.common.by import By

    driver = browser
    driver.get(streamlit_url)
    wait_for_text(driver, "Sign in to continue")
    shot(driver, "login")
    name, password = driver.find_elements(
        By.CSS_SELECTOR, "input[type='text'], input[type='password']"
    )
    name.send_keys(ADMIN[0])
    password.send_keys(ADMIN[1])
    driver.find_element(By.XPATH, "//button[.//p[text()='Sign in']]").click()
    wait_for_text(driver, "Upload one or more images")

    images = [sorted((digits_dir / "test" / d).glob("*.png"))[3] for d in ("4", "9")]
    upload = driver.find_element(By.CSS_SELECTOR, "input[type='file']")
    upload.send_keys("\n".join(str(p) for p in images))
    wait_for_text(driver, "Answered by ui-test-classifier")
    settle(driver)
    expected = requests.post(
        served_app.prediction_url,
        json={"binData": base64.b64encode(images[0].read_bytes()).decode()},
        timeout=30,
    ).json()["jsonData"]["predictions"][0]
    wait_for_text(driver, f"{expected['label']} · {expected['confidence']:.2%}")
    charts = driver.find_elements(By.CSS_SELECTOR, "[data-testid='stVegaLiteChart']")
    assert len(charts) == 2 and all(c.size["height"] > 50 for c in charts)
    flag = driver.find_elements(By.XPATH, "//button[.//p[text()='Flag for expert review']]")
    if flag:  # a confident answer: send one for review anyway, so the queue has an entry
        flag[0].click()
        wait_for_text(driver, "Flagged for expert review as #")
    settle(driver)
    shot(driver, "predict")

    for title, marker, name in (
        ("Review queue", "Labelled production set", "review"),
        ("Models", f"Champion: ui-test-classifier v{served_app.champion}", "models"),
        ("Runs", "MLflow UI", "runs"),
    ):
        open_page(driver, title)
        wait_for_text(driver, marker)
        settle(driver)
        shot(driver, name)
