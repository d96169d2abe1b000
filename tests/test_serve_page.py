"""The web page of `serve` in a real headless browser (Debian's chromium, driven by selenium).

Type a prompt, generate, and check what a learner would see: coloured tokens streaming in, the
hover box with probability, rank, entropy and five alternatives, the attention heatmap, the
model's facts; and the fill-in page of a bidirectional model (`--fill-mask`): type text with [MASK]s,
fill, coloured fillers, the alternatives on hover. The final states are saved as
docs/images/serve-page.png and serve-fill-mask.png for the README.
Skipped with one line where chromium, chromedriver or selenium is missing (`.ci/run` installs them).
"""

from __future__ import annotations

import json
import shutil
import urllib.request
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

IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"
SCREENSHOT, FILL_SCREENSHOT = IMAGES / "serve-page.png", IMAGES / "serve-fill-mask.png"


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    served, url, stop = start_server(train_tiny_run(tmp_path_factory.mktemp("page") / "run", steps=80))
    yield url
    stop()


@pytest.fixture(scope="module")
def fill_url(tmp_path_factory):
    run = train_tiny_run(tmp_path_factory.mktemp("page") / "mlm", 80, "--objective", "mlm")
    served, url, stop = start_server(run, fill_mask=True)
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


def test_fill_page_colours_the_fillers_and_hover_shows_alternatives(fill_url, browser):
    browser.get(fill_url + "/")
    wait = WebDriverWait(browser, 30)
    wait.until(lambda d: "bidirectional" in d.find_element(By.ID, "info").text)
    text = "count 1 2 [MASK] 4 5 [MASK] 7"
    box = browser.find_element(By.ID, "text")
    box.clear()
    box.send_keys(text)
    browser.find_element(By.ID, "fill").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#output .filled")
               and d.find_element(By.ID, "fill").is_enabled())
    filled = browser.find_elements(By.CSS_SELECTOR, "#output .filled")
    request = urllib.request.Request(fill_url + "/v1/fill", json.dumps({"text": text}).encode(),
                                     {"Content-Type": "application/json"})
    answer = json.load(urllib.request.urlopen(request))
    visible = lambda t: json.dumps(t, ensure_ascii=False)[1:-1].replace(" ", "\u2423")  # noqa: E731  as common.js
    assert [f.text for f in filled] == [visible(m["token"]) for m in answer["masks"]]  # each mask: its likeliest
    plain = "".join(p.text for p in browser.find_elements(By.CSS_SELECTOR, "#output .prompt"))
    assert plain == text.replace("[MASK]", "")
    colours = [f.value_of_css_property("background-color") for f in filled]
    assert all(c.startswith("rgb") and c != "rgba(0, 0, 0, 0)" for c in colours)
    ActionChains(browser).move_to_element(filled[0]).perform()
    tooltip = browser.find_element(By.ID, "tooltip")
    wait.until(lambda d: tooltip.is_displayed())
    assert "probability" in tooltip.text and "entropy" in tooltip.text
    rows = tooltip.find_elements(By.CSS_SELECTOR, "tr")
    assert len(rows) == 5  # the top-5 fillers, most likely first
    shares = [float(r.find_elements(By.TAG_NAME, "td")[1].text.rstrip("%")) for r in rows]
    assert shares == sorted(shares, reverse=True)
    assert abs(shares[0] - 100 * answer["masks"][0]["probability"]) < 0.01
    FILL_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(FILL_SCREENSHOT))
