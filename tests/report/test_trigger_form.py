"""The DAG's trigger form in the real Airflow UI (issue 33): the Params in six sections
(Airflow's Param ``section``), each field with its title and help text, in headless
chromium against the session's real ``airflow api-server``."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import report_support as rs
from api_server_support import ADMIN, ApiServer

from regional_training.plan.params import SECTIONS, param_specs

pytestmark = [pytest.mark.integration, pytest.mark.slow]
DAG_ID = "multi_region_training"

#: The trigger dialog's text (the page holds more than one dialog element).
FORM_JS = """
const dialog = Array.from(document.querySelectorAll('[role=dialog]'))
    .find(d => d.textContent.includes('Trigger Dag'));
if (!dialog) return null;
return {text: dialog.textContent};
"""


def _log_in(browser: Any, base: str, user: str, password: str, then: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    browser.delete_all_cookies()  # the session's browser may hold another test's login
    browser.get(f"{base}/auth/login?next={quote(then)}")
    WebDriverWait(browser, 60).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "input[type=password]")))
    browser.find_element(By.CSS_SELECTOR, "input:not([type=password]):not([type=hidden])").send_keys(user)
    field = browser.find_element(By.CSS_SELECTOR, "input[type=password]")
    field.send_keys(password)
    field.submit()


def test_the_trigger_form_shows_every_param_in_its_section_with_help(api_server: ApiServer, browser: Any,
                                                                      artifacts: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    api_server.reserialize("dags-folder")
    base = api_server.base
    _log_in(browser, base, ADMIN, api_server.password(ADMIN), f"{base}/dags/{DAG_ID}")
    try:
        browser.set_window_size(1440, 1000)
        trigger = WebDriverWait(browser, 90).until(expected_conditions.element_to_be_clickable(
            (By.XPATH, "//button[normalize-space(.)='Trigger']")))
        rs.console_errors(browser)  # drain what the DAG page logged before the form opened
        trigger.click()
        wait = WebDriverWait(browser, 60)
        wait.until(lambda b: (b.execute_script(FORM_JS) or {}).get("text", "").count(next(iter(SECTIONS))) > 0)
        # One accordion per section, in the order of SECTIONS; no Param fell into
        # Airflow's default "Run Parameters" section.
        triggers = [el.text.strip() for el in browser.find_elements(
            By.CSS_SELECTOR, "[role=dialog] button.chakra-accordion__itemTrigger") if el.text.strip()]
        sections = [t for t in triggers if t in SECTIONS]
        assert sections == list(SECTIONS), triggers
        assert "Run Parameters" not in triggers, triggers
        # Open each section: its own Params' titles and help texts are in its panel (so a
        # Param is in the section it belongs to), with its field.
        specs = param_specs()
        missing: dict[str, list[str]] = {}
        for title in SECTIONS:
            button = browser.find_element(By.XPATH, f"//*[@role='dialog']//button[normalize-space(.)='{title}']")
            browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", button)
            if button.get_attribute("aria-expanded") != "true" and button.get_attribute("data-state") != "open":
                button.click()
            panel_id = button.get_attribute("aria-controls")
            wait.until(lambda b, panel_id=panel_id: b.execute_script(
                "const p = document.getElementById(arguments[0]); return p && p.offsetHeight > 0 && "
                "p.querySelectorAll('input, textarea, button, [role=combobox], [role=switch]').length > 0", panel_id))
            panel = browser.execute_script("return document.getElementById(arguments[0]).textContent", panel_id)
            names = [n for n in SECTIONS[title] if n in specs]
            missing[title] = [n for n in names if specs[n]["title"] not in panel
                              or " ".join(specs[n]["description"].split()[:4]) not in panel]
            rs.full_page_screenshot(browser, artifacts / f"trigger-form-{title.split()[0].lower()}.png")
            browser.set_window_size(1440, 1000)
        assert missing == {title: [] for title in SECTIONS}, missing
        assert rs.console_errors(browser) == []
        shot = artifacts / "trigger-form.png"
        rs.full_page_screenshot(browser, shot)
        rs.assert_not_blank(shot)
    except Exception:
        # What the page showed, for the artifacts (a timeout alone says nothing).
        browser.save_screenshot(str(artifacts / "trigger-form-failed.png"))
        (artifacts / "trigger-form-failed.txt").write_text(
            browser.current_url + "\n" + str(browser.execute_script("return document.body.textContent")))
        raise
    finally:
        browser.delete_all_cookies()
