"""The site speaks Brazilian Portuguese: the catalog is compiled and complete for the foundation pages."""
import gettext
import re
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import translation

LOCALE = Path(__file__).resolve().parents[2] / "locale" / "pt_BR" / "LC_MESSAGES"


def test_catalog_is_compiled_and_has_no_untranslated_or_fuzzy_entries():
    po = (LOCALE / "django.po").read_text(encoding="utf-8")
    with open(LOCALE / "django.mo", "rb") as mo:
        compiled = gettext.GNUTranslations(mo)._catalog
    # Entries of the foundation's code and templates (other apps' strings are their owners' to translate).
    ours = [entry for entry in po.split("\n\n")[1:]
            if re.search(r"^#:.*(?<=[: ])(accounts|templates|billing_site)/", entry, re.M)]
    assert len(ours) > 100
    untranslated = [entry for entry in ours if re.search(r'^msgstr(\[\d\])? ""$', entry, re.M)]
    assert untranslated == []
    assert [entry for entry in ours if "#, fuzzy" in entry] == []
    # Every one of them is in the committed .mo (`make messages` recompiles it).
    msgids = {re.sub(r'\\(.)', r"\1", m) for m in re.findall(r'^msgid "(.+)"$', "\n\n".join(ours), re.M)}
    singular = {key if isinstance(key, str) else key[0] for key in compiled}
    assert msgids - singular == set()


@pytest.mark.django_db
def test_pages_render_in_portuguese(client):
    client.cookies["django_language"] = "pt-br"
    page = client.get(reverse("accounts:signup")).content.decode()
    assert 'lang="pt-br"' in page and "Crie sua conta" in page and "Cadastrar-se" in page
    home = client.get("/").content.decode()
    assert "Comece grátis" in home


def test_service_messages_are_translated():
    with translation.override("pt-br"):
        from accounts.services import _

        assert _("This invitation has expired. Ask for a new one.") == "Este convite expirou. Peça um novo."
