"""Money is integer minor units plus a lower-case ISO currency. This is the one place that formats it for people."""
from decimal import Decimal, InvalidOperation

# Currencies with no minor unit (Stripe's zero-decimal list); everything else the project sells has two decimals.
ZERO_DECIMAL_CURRENCIES = frozenset(
    {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "vnd", "vuv", "xaf", "xof", "xpf"}
)
_SYMBOLS = {"usd": "$", "brl": "R$ ", "eur": "€", "gbp": "£"}
# Decimal and thousands separators by language (the site speaks en and pt-br).
_SEPARATORS = {"pt-br": (",", "."), "pt": (",", ".")}


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


def format_money(amount_minor: int, currency: str, language: str | None = None) -> str:
    """format_money(49900, "brl") -> "R$ 499,00"; format_money(9900, "usd") -> "$99.00"."""
    currency = currency.lower()
    if language is None:
        # A currency reads best in its home convention: reais with a comma, dollars with a point.
        language = "pt-br" if currency == "brl" else "en"
    decimal_sep, thousands_sep = _SEPARATORS.get(language.lower(), (".", ","))
    exponent = currency_exponent(currency)
    negative = amount_minor < 0
    units, cents = divmod(abs(int(amount_minor)), 10**exponent)
    whole = f"{units:,}".replace(",", thousands_sep)
    text = f"{whole}{decimal_sep}{cents:0{exponent}d}" if exponent else whole
    symbol = _SYMBOLS.get(currency)
    text = f"{symbol}{text}" if symbol else f"{text} {currency.upper()}"
    return f"-{text}" if negative else text
