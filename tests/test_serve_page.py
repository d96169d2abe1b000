"""The web page of `serve` in a real headless browser (Debian's chromium, driven by selenium).

Type a prompt, generate, and check what a learner would see: coloured tokens streaming in, the
hover box with probability, rank, entropy and five alternatives, the attention heatmap, the
model's facts. The final state is saved as docs/images/serve-page.png for the README.
Skipped with one line where chromium, chromedriver or selenium is missing (`.ci/run` installs them).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.serve_helpers import start_server, train_tiny_run

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is missing: pip install -r requirements.txt")
BROWSER, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
if not (BROWSER and DRIVER):
    pytest.skip("chromium or chromedriver is missing: apt-get install -y chromium chromium-driver",
                allow_module_level=True)

from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "images" / "serve-page.png"


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    served, url, stop = start_server(train_tiny_run(tmp_path_factory.mktemp("page") / "run", steps=80))
    yield url
    stop()


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = BROWSER
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    yield driver
    driver.quit()


def test_generate_colours_tokens_and_hover_shows_alternatives(url, browser):
    browser.get(url + "/")
    wait = WebDriverWait(browser, 30)
    wait.until(lambda d: "layers" in d.find_element(By.ID, "info").text)
    info = browser.find_element(By.ID, "info").text
    assert "torch on cpu" in info and "context 48" in info
    prompt = browser.find_element(By.ID, "prompt")
    prompt.clear()
    prompt.send_keys("count 1 2")
    max_tokens = browser.find_element(By.ID, "max_tokens")
    max_tokens.clear()
    max_tokens.send_keys("30")
    browser.find_element(By.ID, "generate").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#output .token")
               and d.find_element(By.ID, "generate").is_enabled())
    tokens = browser.find_elements(By.CSS_SELECTOR, "#output .token")
    assert 0 < len(tokens) <= 30
    assert browser.find_element(By.CSS_SELECTOR, "#output .prompt").text == "count 1 2"
    colours = {t.value_of_css_property("background-color") for t in tokens}
    assert all(c.startswith("rgb") and c != "rgba(0, 0, 0, 0)" for c in colours)  # every token has a colour
    ActionChains(browser).move_to_element(tokens[min(3, len(tokens) - 1)]).perform()
    tooltip = browser.find_element(By.ID, "tooltip")
    wait.until(lambda d: tooltip.is_displayed())
    assert "probability" in tooltip.text and "rank" in tooltip.text and "entropy" in tooltip.text
    rows = tooltip.find_elements(By.CSS_SELECTOR, "tr")
    assert len(rows) == 5  # the top-5 alternatives, most likely first
    shares = [float(r.find_elements(By.TAG_NAME, "td")[1].text.rstrip("%")) for r in rows]
    assert shares == sorted(shares, reverse=True)
    canvas = browser.find_element(By.ID, "attention")
    wait.until(lambda d: canvas.get_attribute("data-tokens"))
    assert int(canvas.get_attribute("data-tokens")) == len("count 1 2") + len(tokens)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOT))


def test_bad_settings_show_the_servers_message(url, browser):
    browser.get(url + "/")
    WebDriverWait(browser, 30).until(lambda d: "layers" in d.find_element(By.ID, "info").text)
    temperature = browser.find_element(By.ID, "temperature")
    temperature.clear()
    temperature.send_keys("7")
    browser.find_element(By.ID, "generate").click()
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "status").text)
    assert "temperature=7" in browser.find_element(By.ID, "status").text
