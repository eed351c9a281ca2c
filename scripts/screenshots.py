"""
Screenshots of the foundation pages (docs/screenshots/foundation-*.png), for review by eye.

Usage: .venv/bin/python scripts/screenshots.py [--base-url http://127.0.0.1:8000]
Needs a running site (e.g. `make run`) whose database this script can also reach through DATABASE_URL (it creates
a demo owner with a second member, a pending invitation and an API key). Drives Debian's chromium through
Playwright; never downloads a browser.
"""
import argparse
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_site.settings")

PASSWORD = "screenshot-passphrase-42"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def prepare_data() -> None:
    import django

    django.setup()
    from accounts import selectors, services
    from accounts.models import Membership, User

    owner = User.objects.filter(email="owner@shots.example").first()
    if owner is None:
        owner = services.user_signup(email="owner@shots.example", password=PASSWORD, team_name="Rocket Labs")
    team = Membership.objects.get(user=owner, role="owner").team
    colleague = User.objects.filter(email="colleague@shots.example").first() or User.objects.create_user(
        email="colleague@shots.example", password=PASSWORD)
    Membership.objects.get_or_create(user=colleague, team=team, defaults={"role": "admin"})
    selectors.seat_limit_provider_register(lambda *, team: 10)  # the free plan has one seat; show a fuller team
    if not team.invitations.filter(status="pending").exists():
        services.invitation_create(team=team, email="new.hire@shots.example", role="member", invited_by=owner)
    side_owner = User.objects.filter(email="friend@shots.example").first()
    if side_owner is None:
        side_owner = services.user_signup(email="friend@shots.example", password=PASSWORD, team_name="Side Project")
    side_team = Membership.objects.get(user=side_owner, role="owner").team
    Membership.objects.get_or_create(user=owner, team=side_team, defaults={"role": "member"})
    if not team.api_keys.exists():
        services.api_key_create(team=team, name="Production server", created_by=owner)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    args = parser.parse_args()
    prepare_data()
    from playwright.sync_api import sync_playwright

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = args.base_url.rstrip("/")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        desktop = browser.new_context(viewport={"width": 1280, "height": 860})
        page = desktop.new_page()

        def shot(name: str, path: str, *, full: bool = True) -> None:
            page.goto(base + path)
            page.screenshot(path=str(out / f"foundation-{name}.png"), full_page=full)

        shot("home", "/")
        shot("pricing", "/pricing/")
        shot("login", "/accounts/login/")
        shot("password-reset", "/accounts/password-reset/")
        page.goto(base + "/accounts/signup/")
        page.fill("#id_email", "owner@shots.example")
        page.fill("#id_password", "123")
        page.click("form button[type=submit]")
        page.screenshot(path=str(out / "foundation-signup-errors.png"), full_page=True)
        shot("signup", "/accounts/signup/")

        page.goto(base + "/accounts/login/")
        page.fill("#id_username", "owner@shots.example")
        page.fill("#id_password", PASSWORD)
        page.click("form button[type=submit]")
        page.wait_for_load_state()
        shot("members", "/accounts/team/members/")
        page.goto(base + "/accounts/team/api-keys/")
        page.fill("#id_name", "CI pipeline")
        page.click("text=Create key")
        page.wait_for_load_state()
        page.screenshot(path=str(out / "foundation-api-keys-created.png"), full_page=True)
        shot("api-keys", "/accounts/team/api-keys/")
        page.click(".team-switcher summary")
        page.screenshot(path=str(out / "foundation-team-switcher.png"))
        page.goto(base + "/accounts/team/api-keys/")
        page.keyboard.press("Tab")  # the skip link appears on focus
        page.screenshot(path=str(out / "foundation-skip-link-focus.png"))

        phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, device_scale_factor=1)
        mobile = phone.new_page()
        mobile.goto(base + "/")
        mobile.screenshot(path=str(out / "foundation-home-mobile.png"), full_page=True)
        portuguese = browser.new_context(viewport={"width": 1280, "height": 860}, locale="pt-BR")
        portuguese.add_cookies([{"name": "django_language", "value": "pt-br", "url": base}])
        pt_page = portuguese.new_page()
        pt_page.goto(base + "/accounts/signup/")
        pt_page.screenshot(path=str(out / "foundation-signup-pt-br.png"), full_page=True)
        browser.close()
    print(f"Screenshots in {out}")


if __name__ == "__main__":
    main()
