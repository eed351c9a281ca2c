"""
Every string a customer can read (pages, emails, API errors, the catalog's words) has a Brazilian Portuguese
translation: `makemessages` is run over the customer-facing code and templates in a temporary directory, and each msgid
it finds must have a non-empty, non-fuzzy msgstr in the project's .po files and be in the compiled .mo files.
Staff-only code (the back office, admin, management commands) is left out on purpose: it is not customer-facing.
"""
import gettext
import os
import shutil
from pathlib import Path

from babel.messages.pofile import read_po
from django.core.management import call_command
from django.test import override_settings

from billing.catalog import load_catalog

ROOT = Path(__file__).resolve().parents[2]
CATALOGS = [ROOT / "locale" / "pt_BR" / "LC_MESSAGES", ROOT / "billing" / "locale" / "pt_BR" / "LC_MESSAGES"]
# What customers see, relative to the repository root. Directories are copied whole, minus STAFF_ONLY parts.
CUSTOMER_FACING = [
    "templates", "accounts", "usage",
    "billing/templates/billing", "billing/templatetags", "billing/services", "billing/api", "billing/webhooks/handlers.py",
    "billing/views.py", "billing/views_payments.py", "billing/forms_payments.py", "billing/selectors.py",
    "billing/receipts.py", "billing/emails.py", "billing/stripe_gateway/_core.py",
    "billing_site/api_errors.py", "billing_site/parsers.py",
]
STAFF_ONLY = {"admin", "admin.py", "tests", "migrations", "management", "backoffice", "__pycache__", "locale"}


def _copy_customer_facing(target: Path) -> None:
    ignore = shutil.ignore_patterns(*STAFF_ONLY)
    for relative in CUSTOMER_FACING:
        source = ROOT / relative
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, destination, ignore=ignore)
        else:
            shutil.copy2(source, destination)


def _used_messages(tmp_path: Path) -> list:
    _copy_customer_facing(tmp_path)
    (tmp_path / "locale").mkdir()
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with override_settings(LOCALE_PATHS=[str(tmp_path / "locale")]):
            call_command("makemessages", locale=["pt_BR"], verbosity=0, no_wrap=True)
    finally:
        os.chdir(cwd)
    with open(tmp_path / "locale" / "pt_BR" / "LC_MESSAGES" / "django.po", "rb") as handle:
        return [message for message in read_po(handle) if message.id]


def _key(message) -> tuple:
    return (message.context or "", message.id if isinstance(message.id, str) else message.id[0])


def test_every_customer_facing_msgid_has_a_portuguese_translation(tmp_path):
    used = _used_messages(tmp_path)
    assert len(used) > 300  # the pages, emails and errors: a handful would mean the scan found nothing
    translated: dict[tuple, object] = {}
    compiled: set = set()
    for directory in CATALOGS:
        with open(directory / "django.po", "rb") as handle:
            for message in read_po(handle):
                strings = [message.string] if isinstance(message.string, str) else list(message.string)
                if message.id and not message.fuzzy and all(strings):
                    translated[_key(message)] = message
        with open(directory / "django.mo", "rb") as handle:
            for key in gettext.GNUTranslations(handle)._catalog:
                compiled.add(key if isinstance(key, str) else key[0])
    missing = sorted(f"{context}|{msgid}" for context, msgid in {_key(m) for m in used} - set(translated))
    assert missing == [], f"{len(missing)} customer-facing msgids without a pt_BR translation: {missing[:20]}"
    not_compiled = sorted(
        msgid for context, msgid in {_key(m) for m in used}
        if (f"{context}\x04{msgid}" if context else msgid) not in compiled
    )
    assert not_compiled == [], f"run `make messages` to compile: {not_compiled[:20]}"


def test_catalog_words_have_portuguese_text():
    catalog = load_catalog()
    for item in [*catalog.plans, *catalog.credit_packs]:
        assert (item.translations.get("pt-br") or {}).get("name"), item.key
    for plan in catalog.plans:
        assert plan.translations["pt-br"].get("description"), plan.key
    for meter in catalog.meters:
        assert meter.translations["pt-br"].get("display_name"), meter.key
