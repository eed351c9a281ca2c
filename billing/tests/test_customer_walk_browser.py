"""
A customer's whole path in a real browser (Debian's chromium through Playwright), in Portuguese with reais, against
the emulator, whose webhooks reach the live server: sign-up -> Checkout in BRL with a 3-D Secure card -> plan change
authenticated on the bank's page -> downgrade at period end -> credit pack paid by Pix -> payments page filtered ->
receipt PDF read back -> card added on the hosted page, made default, removed. Every page is screenshotted at 1280 and 390 px (into
`screenshots_dir`; SCREENSHOTS_DIR=docs/screenshots refreshes docs/screenshots/walk-*.png), and the project's own pages are checked for sideways scrolling at 390 px.
"""
import re
import shutil
import time
from io import BytesIO
from pathlib import Path

import pytest

from billing_site.tests.test_pages_browser import AUDIT, browser  # noqa: F401  (the module's chromium fixture)

from .conftest import wait_for

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed"),
]

PASSWORD = "pássaro-azul-42"


class Walk:
    """Screenshots numbered in walk order; the site's own pages are audited at both widths."""

    def __init__(self, page, base_url: str, screenshots: Path):
        self.page = page
        self.screenshots = screenshots
        self.base_url = base_url
        self.count = 0
        self.problems: list[str] = []

    def shot(self, name: str, *, ours: bool = True) -> None:
        self.count += 1
        for width, height in ((1280, 900), (390, 844)):
            self.page.set_viewport_size({"width": width, "height": height})
            if ours:
                problems = self.page.evaluate(AUDIT)
                self.problems.extend(f"{name}@{width}: {problem}" for problem in problems)
            self.page.screenshot(path=str(self.screenshots / f"walk-{self.count:02d}-{name}-{width}.png"), full_page=True)
        self.page.set_viewport_size({"width": 1280, "height": 900})

    def go(self, path: str):
        response = self.page.goto(self.base_url + path)
        assert response.status == 200, (path, response.status)
        return response

    def text(self) -> str:
        return self.page.inner_text("main") if self.page.locator("main").count() else self.page.inner_text("body")


def test_customer_walk_in_portuguese(browser, live_server, stripe_emulator, settings, screenshots_dir):  # noqa: F811
    from accounts.models import Team
    from billing.selectors import team_plan, team_subscription
    from billing.services.setup import catalog_push
    from billing.webhooks import views
    from billing.extensions import credit_ledger

    settings.SITE_URL = live_server.url
    settings.TRIAL_PERIOD_DAYS = 0  # a paying customer from the first day, so plan changes charge
    views._ENDPOINT_CACHE.clear()
    catalog_push(out=lambda line: None)  # the emulator delivers webhooks to the live server
    for old in screenshots_dir.glob("walk-*.png"):
        old.unlink()

    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="pt-BR",
                                  extra_http_headers={"Accept-Language": "pt-br"})
    page = context.new_page()
    walk = Walk(page, live_server.url, screenshots_dir)

    # 1. Sign-up.
    walk.go("/accounts/signup/")
    walk.shot("signup")
    page.fill("#id_email", "ana@example.com.br")
    page.fill("#id_password", PASSWORD)
    if page.locator("#id_team_name").count():
        page.fill("#id_team_name", "Padaria Estrela")
    page.click("main form button[type=submit]")
    page.wait_for_url(f"{live_server.url}/billing/")
    team = Team.objects.get(memberships__user__email="ana@example.com.br")

    # 2. Pricing in reais, Checkout in Portuguese with a card that asks for 3-D Secure every time.
    walk.go("/pricing/")
    assert "R$ 499,00" in walk.text() and "Assinar Pro mensal" in walk.text()
    walk.shot("pricing")
    page.click("button[data-lookup-key=pro_monthly]")
    page.wait_for_selector("#checkout-form")
    walk.shot("checkout", ours=False)
    page.fill("#card_number", "4000 0000 0000 3220")
    page.click("#submit")
    page.wait_for_selector("#approve")
    walk.shot("checkout-3ds", ours=False)
    page.click("#approve")
    page.wait_for_url(f"{live_server.url}/billing/checkout/success/**")
    assert "1 × Pro" in walk.text() and "R$ 499,00" in walk.text() and "None" not in walk.text()
    walk.shot("checkout-success")
    wait_for(lambda: team_plan(team=team).key == "pro", "the Pro plan")
    walk.go("/billing/")
    assert "Ativa" in walk.text() and "Visa •••• 3220" in walk.text()
    walk.shot("billing-pro")
    walk.go("/pricing/")
    assert "Plano atual" in walk.text() and "Mudar para Team mensal" in walk.text()
    walk.shot("pricing-current-plan")

    # 3. Upgrade to Team: the preview, then the bank's 3-D Secure page, then back to /billing/.
    walk.go("/billing/change/team_monthly/")
    preview = walk.text()
    assert "Cobrado agora" in preview and "R$ 2.499,00 por mês" in preview and "Próxima renovação" in preview
    charged_now = re.search(r"Cobrado agora\s+(R\$ [\d.,]+)", preview).group(1)
    walk.shot("change-plan-preview")
    page.click("main form button[type=submit]")
    page.wait_for_selector("#approve")
    walk.shot("change-plan-3ds", ours=False)
    page.click("#approve")
    page.wait_for_url(f"{live_server.url}/billing/")
    assert "Seu plano foi alterado." in walk.text()
    assert wait_for(lambda: team_plan(team=team).key == "team", "the Team plan")
    assert "Em aberto" not in page.inner_text("#invoices")  # the upgrade invoice shows as paid at once
    walk.shot("billing-team")

    # 4. Downgrade back to Pro at the end of the period: scheduled, shown, nothing charged now.
    walk.go("/billing/change/pro_monthly/")
    assert "Vale a partir de" in walk.text() and "Nada" in walk.text()
    walk.shot("downgrade-preview")
    page.click("main form button[type=submit]")
    page.wait_for_url(f"{live_server.url}/billing/")
    assert re.search(r"Muda para Pro em \d{1,2} \w{3} \d{4}", walk.text()), walk.text()[:800]
    assert team_plan(team=team).key == "team"
    walk.shot("billing-downgrade-scheduled")

    # 5. A credit pack paid by Pix: the QR code, the payment, credits granted once.
    walk.go("/pricing/")
    page.click("button[data-lookup-key=credits_10]")
    page.wait_for_selector("#checkout-form")
    page.check("#method-pix")
    walk.shot("checkout-pix", ours=False)
    page.click("#submit")
    page.wait_for_selector("#pix-qr")
    walk.shot("pix-qr-code", ours=False)
    instructions = page.get_attribute("#instructions", "href")
    page.click("#continue")
    page.wait_for_url(f"{live_server.url}/billing/checkout/success/**")
    walk.go("/billing/")
    wait_for(lambda: (walk.go("/billing/") and "aguardando pagamento" in walk.text()), "the waiting Pix notice")
    assert "Um pagamento Pix de R$ 45,00 está aguardando pagamento." in walk.text()
    walk.shot("billing-pix-waiting")
    page.goto(instructions)
    page.click("#simulate-pay")
    purchases = credit_ledger().ledger(team=team).filter(reason="purchase")
    wait_for(lambda: purchases.exists(), "the Pix credits")
    time.sleep(1)  # late or repeated deliveries must not grant twice
    assert list(purchases.values_list("delta", flat=True)) == [10]
    walk.go("/billing/")
    assert "13 créditos restantes" in walk.text() and "aguardando pagamento" not in walk.text()
    walk.shot("billing-after-pix")

    # 6. The payments page, filtered to credit packs; the receipt PDF read back.
    walk.go("/billing/payments/")
    assert page.locator("tr.payment").count() >= 3  # Pro, the upgrade, the pack
    walk.shot("payments")
    page.select_option("#id_kind", "credit_pack")
    page.click("main form button[type=submit]")
    page.wait_for_load_state()
    assert page.locator("tr.payment").count() == 1 and "R$ 45,00" in walk.text()
    walk.shot("payments-credit-packs")
    receipt_url = page.get_attribute("tr.payment a[href$='receipt.pdf']", "href")
    pdf = page.request.get(live_server.url + receipt_url)
    assert pdf.status == 200 and pdf.headers["content-type"] == "application/pdf"
    from pypdf import PdfReader

    text = "\n".join(p.extract_text() for p in PdfReader(BytesIO(pdf.body())).pages)
    assert "R$ 45,00" in text and "Pix" in text and "10 créditos" in text, text[:800]
    page.select_option("#id_kind", "")
    page.click("main form button[type=submit]")
    page.wait_for_load_state()
    upgrade_pdf = None
    for href in page.eval_on_selector_all("tr.payment a[href$='receipt.pdf']", "els => els.map(e => e.href)"):
        body = page.request.get(href).body()
        words = "\n".join(p.extract_text() for p in PdfReader(BytesIO(body)).pages)
        if charged_now.split()[-1] in words:
            upgrade_pdf = words
    assert upgrade_pdf, f"no receipt shows the upgrade's {charged_now}"

    # 7. Cards: add a Mastercard on Stripe's hosted page (Checkout in setup mode), make it the default, remove the Visa.
    walk.go("/billing/")
    page.click("#add-card")
    page.wait_for_url(f"{stripe_emulator.url}/_emulator/checkout/cs_*")
    page.fill("#card_number", "5555 5555 5555 4444")
    walk.shot("card-add", ours=False)
    page.click("#submit")
    page.wait_for_url(f"{live_server.url}/billing/#cards")
    assert "Seu cartão foi salvo." in walk.text() and "Mastercard •••• 4444" in walk.text()
    walk.shot("billing-card-added")
    page.click("li.saved-card:has-text('4444') >> text=Tornar padrão")
    page.wait_for_url(f"{live_server.url}/billing/#cards")
    assert "Seu cartão padrão foi alterado." in walk.text()
    page.click("li.saved-card:has-text('3220') >> text=Remover")
    page.wait_for_url(f"{live_server.url}/billing/#cards")
    assert "O cartão foi removido." in walk.text()
    assert page.locator("li.saved-card").count() == 1 and "3220" not in page.inner_text("#cards")
    assert team_subscription(team=team).stripe_data["default_payment_method"].startswith("pm_")
    walk.shot("billing-cards-final")
    walk.go("/usage/")
    assert "api_call" not in page.content() and "chamadas de API" in walk.text()
    walk.shot("usage")
    context.close()
    assert walk.problems == []
