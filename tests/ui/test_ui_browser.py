"""The app in a real browser: headless Chromium signs in, uploads an image, sees the answer.

``streamlit run ui/main.py`` is started on a free loopback port against the
served model; Debian's chromium and chromedriver drive it (``make chromium``
installs them). Screenshots of every page go to ``docs/screenshots/``.

The app gets a catalog of its own, as it looks in use: the reference images
the other tests ingested, and a review queue of the served model's least
confident answers on the test digits, at the deploy config's threshold, some
already reviewed. Nothing the AppTests left behind (threshold 100%) shows.
"""

from __future__ import annotations

import base64
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT, TEST_STATE
from tests.ui.conftest import ADMIN, REVIEWER, free_port

pytestmark = pytest.mark.integration
SCREENSHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


QUEUED = 6  # the least confident test digits kept for review
REVIEWED = 2  # of them, already reviewed


def app_catalog(served_app, digits_dir, folder: Path) -> str:
    """A copy of the tests' catalog, with a review queue as real use would leave it."""
    from clearsight.catalog import sqlite_url
    from clearsight.review import ReviewStore
    from ui.config import load_config
    from ui.data.endpoint import predict
    from ui.data.reviews import content_store

    target = folder / "catalog.db"
    shutil.copyfile(served_app.root / "catalog.db", target)
    with sqlite3.connect(target) as db:  # keep the images, drop the AppTests' queue
        for table in ("reviews", "review_predictions", "audit_log"):
            db.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names
    threshold = load_config().uncertain_threshold
    paths = sorted((digits_dir / "test").glob("*/*.png"))
    images = [p.read_bytes() for p in paths]
    result = predict(served_app.prediction_url, images)
    least = sorted(range(len(paths)), key=lambda i: result.answers[i]["confidence"])[:QUEUED]
    store = ReviewStore(sqlite_url(target))
    for n, i in enumerate(least):
        answer = result.answers[i]
        asked_by = REVIEWER[0] if n % 3 else ADMIN[0]
        queued = store.keep_prediction(
            images[i],
            answer,
            store=content_store(),
            requested_by=asked_by,
            threshold=threshold,
            flagged=answer["confidence"] >= threshold,  # confident, but someone asked
            filename=paths[i].name,
            model=result.model,
        )
        if n < REVIEWED:  # the expert knows the true label: the digit's folder
            store.review(queued, reviewer=REVIEWER[0], label=paths[i].parent.name)
    store.close()
    return sqlite_url(target)


@pytest.fixture(scope="module")
def streamlit_url(served_app, digits_dir, tmp_path_factory):
    port = free_port()
    folder = tmp_path_factory.mktemp("streamlit")
    log = folder / "streamlit.log"
    env = {
        **os.environ,
        **served_app.env,
        "CLEARSIGHT_UI_METRICS_PORT": str(free_port()),
        "CLEARSIGHT_CATALOG_URL": app_catalog(served_app, digits_dir, folder),
    }
    env.pop("CLEARSIGHT_MLFLOW_UI_URL", None)  # the default link, as a user sees it
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
    inputs = "input[type='text'], input[type='password']"
    deadline = time.monotonic() + 30
    while len(driver.find_elements(By.CSS_SELECTOR, inputs)) < 2:  # the form draws after the text
        assert time.monotonic() < deadline, driver.page_source[-3000:]
        time.sleep(0.3)
    name, password = driver.find_elements(By.CSS_SELECTOR, inputs)
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
    charts = "[data-testid='stVegaLiteChart']"
    deadline = time.monotonic() + 60  # the chart library loads after the text is drawn
    while len(driver.find_elements(By.CSS_SELECTOR, charts)) < 2:
        assert time.monotonic() < deadline, "the two top-k charts were never drawn"
        time.sleep(0.3)
    drawn = driver.find_elements(By.CSS_SELECTOR, charts)
    assert len(drawn) == 2 and all(c.size["height"] > 50 for c in drawn)
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
        body = driver.find_element(By.TAG_NAME, "body").text
        # What a user sees: no test folders, no link to the production MLflow's port.
        assert str(TEST_STATE) not in body and "127.0.0.1:5000" not in body, body[-2000:]
        shot(driver, name)
    open_page(driver, "Review queue")
    body = driver.find_element(By.TAG_NAME, "body").text
    from ui.config import load_config

    assert f"(threshold {load_config().uncertain_threshold:.0%})" in body, body[-2000:]
    assert "threshold 100%" not in body
