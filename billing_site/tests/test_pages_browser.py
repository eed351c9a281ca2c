"""
The pages in a real browser (Debian's chromium through Playwright): landmarks, one h1, a label for every control,
a working skip link, and no sideways scrolling on a phone.
"""
import os
import shutil

import pytest

from accounts.tests.factories import DEFAULT_PASSWORD, make_team_with_owner

pytestmark = [
    pytest.mark.browser,
    # live_server needs committed data. pytest-django runs these transactional tests after the others (in both
    # orders), so the flush at their end cannot take data-migration rows away from a non-transactional test.
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed"),
]

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PUBLIC_PAGES = ["/", "/pricing/", "/accounts/login/", "/accounts/signup/", "/accounts/password-reset/"]
TEAM_PAGES = ["/accounts/team/members/", "/accounts/team/api-keys/"]

# Returns a list of problems found on the page (empty when fine).
AUDIT = """() => {
  const problems = [];
  if (!document.documentElement.lang) problems.push("no lang on <html>");
  for (const selector of ["header", "nav", "main#main", "footer"]) {
    if (!document.querySelector(selector)) problems.push("missing landmark " + selector);
  }
  const h1s = document.querySelectorAll("h1").length;
  if (h1s !== 1) problems.push(h1s + " h1 elements");
  for (const control of document.querySelectorAll("input:not([type=hidden]), select, textarea")) {
    const labelled = (control.id && document.querySelector(`label[for="${control.id}"]`))
      || control.getAttribute("aria-label") || control.closest("label");
    if (!labelled) problems.push("unlabelled control " + (control.name || control.outerHTML.slice(0, 60)));
  }
  for (const button of document.querySelectorAll("button, a")) {
    if (!button.textContent.trim() && !button.getAttribute("aria-label")) {
      problems.push("empty " + button.outerHTML.slice(0, 60));
    }
  }
  if (document.documentElement.scrollWidth > document.documentElement.clientWidth + 1) {
    const width = document.documentElement.clientWidth;
    const culprits = [...document.querySelectorAll("body *")]
      .filter((e) => e.getBoundingClientRect().right > width + 1)
      .slice(0, 5).map((e) => e.tagName.toLowerCase() + "." + e.className);
    problems.push("horizontal scroll: " + document.documentElement.scrollWidth + "px " + culprits.join(" "));
  }
  return problems;
}"""


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls the tests make here are still
    # synchronous, so Django's guard against ORM calls from async code does not apply.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def audit(page, url):
    response = page.goto(url)
    assert response.status == 200, url
    return page.evaluate(AUDIT)


def test_pages_are_accessible_on_desktop_and_phone(browser, live_server):
    team, owner = make_team_with_owner(name="Browser Co")
    for viewport in ({"width": 1280, "height": 800}, {"width": 390, "height": 844}):
        context = browser.new_context(viewport=viewport)
        page = context.new_page()
        for path in PUBLIC_PAGES:
            assert audit(page, live_server.url + path) == [], (viewport, path)
        page.goto(live_server.url + "/accounts/login/")
        page.fill("#id_username", owner.email.upper())  # emails log in whatever their case
        page.fill("#id_password", DEFAULT_PASSWORD)
        page.click("main form button[type=submit]")
        page.wait_for_load_state()
        for path in TEAM_PAGES:
            assert audit(page, live_server.url + path) == [], (viewport, path)
        context.close()


def test_skip_link_is_the_first_stop_and_moves_focus_to_main(browser, live_server):
    page = browser.new_page()
    page.goto(live_server.url + "/")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"
    assert page.evaluate("document.activeElement.getBoundingClientRect().left") >= 0  # visible when focused
    page.keyboard.press("Enter")
    assert page.evaluate("location.hash") == "#main"
    page.close()


def test_api_key_is_shown_once_in_the_browser(browser, live_server):
    team, owner = make_team_with_owner()
    page = browser.new_page()
    page.goto(live_server.url + "/accounts/login/")
    page.fill("#id_username", owner.email)
    page.fill("#id_password", DEFAULT_PASSWORD)
    page.click("main form button[type=submit]")
    page.wait_for_load_state()
    page.goto(live_server.url + "/accounts/team/api-keys/")
    page.fill("#id_name", "browser key")
    page.click("text=Create key")
    secret = page.input_value("#new-key")
    assert secret.startswith("sk_") and "." in secret
    page.reload()  # a reload is a GET: the secret is gone
    assert page.locator("#new-key").count() == 0
    page.close()
