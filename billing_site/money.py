"""Money is integer minor units plus a lower-case ISO currency. This is the one place that formats it for people."""
from decimal import Decimal, InvalidOperation

from babel.numbers import format_currency
from django.utils.translation import to_locale

# Currencies with no minor unit (Stripe's zero-decimal list); everything else the project sells has two decimals.
ZERO_DECIMAL_CURRENCIES = frozenset(
    {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "vnd", "vuv", "xaf", "xof", "xpf"}
)



def currency_exponent(currency: str) -> int:
    """Decimal places of `currency`'s minor unit: 0 for Stripe's zero-decimal currencies, else 2."""
    return 0 if currency.lower() in ZERO_DECIMAL_CURRENCIES else 2


def minor_to_decimal(amount_minor: int, currency: str) -> Decimal:
    return Decimal(int(amount_minor)).scaleb(-currency_exponent(currency))


class MoneyParseError(ValueError):
    """Text that is not an amount of the currency; str() is a message for the person who typed it."""


def money_parse_minor(text: str | Decimal, currency: str) -> int:
    """
    The one parser of amounts people type: '49.90', '49,90' or Decimal('49.90') in `currency` -> 4990 (integer
    minor units). Refuses more decimals than the currency has, non-finite and over-long input.
    """
    exponent = currency_exponent(currency)
    if isinstance(text, Decimal):
        value = text
    else:
        cleaned = str(text).strip().replace(" ", "")
        if "," in cleaned and "." not in cleaned:
            cleaned = cleaned.replace(",", ".")
        if not cleaned or len(cleaned) > 24:
            raise MoneyParseError("Enter an amount such as 49.90.")
        try:
            value = Decimal(cleaned)
        except InvalidOperation:
            raise MoneyParseError("Enter an amount such as 49.90.") from None
    if not value.is_finite():
        raise MoneyParseError("Enter an amount such as 49.90.")
    scaled = value.scaleb(exponent)
    if scaled != scaled.to_integral_value():
        raise MoneyParseError(f"{currency.upper()} has {exponent} decimal places.")
    return int(scaled)


def _babel_locale(language: str) -> str:
    """A Django language code ("pt-br", "en") as a Babel locale ("pt_BR", "en"); unknown ones read as English."""
    from babel import Locale, UnknownLocaleError

    name = to_locale(language)
    try:
        Locale.parse(name)
    except (ValueError, UnknownLocaleError):
        return "en"
    return name


def format_money(amount_minor: int, currency: str, language: str | None = None) -> str:
    """
    format_money(49900, "brl") -> "R$ 499,00"; format_money(9900, "usd") -> "$99.00";
    format_money(9900, "usd", "pt-br") -> "US$ 99,00"; format_money(249900, "brl", "en") -> "R$2,499.00".
    Babel's CLDR data decides symbols, separators and the sign's place for the language.
    """
    currency = currency.lower()
    if language is None:
        # A currency reads best in its home convention: reais with a comma, dollars with a point.
        language = "pt-br" if currency == "brl" else "en"
    text = format_currency(
        minor_to_decimal(amount_minor, currency), currency.upper(), locale=_babel_locale(language),
        # The amount has exactly the currency's minor unit already (Stripe's exponent, e.g. 0 for JPY).
        currency_digits=True,
    )
    # CLDR puts a no-break space (U+00A0, or U+202F) between "R$" and the number. The contract's strings, the
    # plain-text emails and grep-able tests use an ordinary space; pages that must not wrap an amount say so in CSS (white-space).
    return text.replace("\u00a0", " ").replace("\u202f", " ")


def format_unit_price(unit_amount_decimal: str | Decimal, currency: str, language: str | None = None) -> str:
    """
    A per-unit price given in (fractional) minor units, as Stripe's `unit_amount_decimal`: ("0.2", "usd") ->
    "$0.002"; ("1", "brl", "pt-br") -> "R$ 0,01". Up to four decimals, because a fraction of a cent is the point.
    """
    currency = currency.lower()
    if language is None:
        language = "pt-br" if currency == "brl" else "en"
    major = Decimal(str(unit_amount_decimal)) / (Decimal(10) ** currency_exponent(currency))
    locale = _babel_locale(language)
    from babel import Locale

    pattern = Locale.parse(locale).currency_formats["standard"].pattern.split(";")[0].replace("0.00", "0.00##")
    text = format_currency(major, currency.upper(), format=pattern, locale=locale, currency_digits=False)
    return text.replace("\u00a0", " ").replace("\u202f", " ")
