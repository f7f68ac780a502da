"""The web page end to end: a real ``llmesr serve`` process and headless Chromium (Playwright)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (Debian package chromium)"
)


@pytest.fixture(scope="module")
def server(bundles):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [
        sys.executable,
        "-m",
        "llmesr.cli",
        "serve",
        f"llmesr={bundles / 'llmesr_bundle'}",
        f"sasrec={bundles / 'sasrec_bundle'}",
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            if httpx.get(f"{url}/health").status_code == 200:
                break
        except httpx.TransportError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail(f"server did not start: {proc.stdout.read().decode()[-2000:]}")
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def test_pick_a_history_and_compare_two_bundles(server, tmp_path):
    from PIL import Image

    errors: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 800})
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(server)
        page.wait_for_function("document.getElementById('bundle-b').options.length == 2")
        page.select_option("#bundle-b", "sasrec")

        for title in ("item 3", "item 4", "item 5"):
            page.fill("#search", title)
            page.locator("button.add", has_text=f"+ {title}").first.wait_for()
            page.locator("button.add", has_text=f"+ {title}").first.click()
        assert page.locator("#history li").count() == 3
        page.fill("#k", "5")
        page.click("#recommend")
        page.wait_for_selector("body[data-ready='1']")

        left = page.locator("#recs-a li.rec")
        right = page.locator("#recs-b li.rec")
        assert left.count() == 5 and right.count() == 5
        assert left.first.get_attribute("data-item") == "6"  # the learned cycle continues
        assert page.locator("#recs-a .badge").count() == 5  # every item has a head/tail badge
        assert {"3", "4", "5"}.isdisjoint(left.nth(i).get_attribute("data-item") for i in range(5))

        page.fill("#k", "0")  # a bad k shows the server's message instead of failing silently
        page.click("#recommend")
        page.wait_for_function("document.getElementById('error').textContent.length > 0")

        shot = tmp_path / "page.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()

    image = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert image.shape[0] >= 400 and image.shape[1] >= 1000
    assert image.std() > 10  # text and badges were rendered, not a blank page
    assert not [e for e in errors if "422" not in e], errors  # the deliberate bad k logs a 422 only
