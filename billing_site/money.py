"""Money is integer minor units plus a lower-case ISO currency. This is the one place that formats it for people."""
from decimal import Decimal

# Currencies with no minor unit (Stripe's zero-decimal list); everything else the project sells has two decimals.
ZERO_DECIMAL_CURRENCIES = frozenset(
    {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "vnd", "vuv", "xaf", "xof", "xpf"}
)
_SYMBOLS = {"usd": "$", "brl": "R$ ", "eur": "€", "gbp": "£"}
# Decimal and thousands separators by language (the site speaks en and pt-br).
_SEPARATORS = {"pt-br": (",", "."), "pt": (",", ".")}


def minor_to_decimal(amount_minor: int, currency: str) -> Decimal:
    exponent = 0 if currency.lower() in ZERO_DECIMAL_CURRENCIES else 2
    return Decimal(int(amount_minor)).scaleb(-exponent)


def format_money(amount_minor: int, currency: str, language: str | None = None) -> str:
    """format_money(49900, "brl") -> "R$ 499,00"; format_money(9900, "usd") -> "$99.00"."""
    currency = currency.lower()
    if language is None:
        # A currency reads best in its home convention: reais with a comma, dollars with a point.
        language = "pt-br" if currency == "brl" else "en"
    decimal_sep, thousands_sep = _SEPARATORS.get(language.lower(), (".", ","))
    exponent = 0 if currency in ZERO_DECIMAL_CURRENCIES else 2
    negative = amount_minor < 0
    units, cents = divmod(abs(int(amount_minor)), 10**exponent)
    whole = f"{units:,}".replace(",", thousands_sep)
    text = f"{whole}{decimal_sep}{cents:0{exponent}d}" if exponent else whole
    symbol = _SYMBOLS.get(currency)
    text = f"{symbol}{text}" if symbol else f"{text} {currency.upper()}"
    return f"-{text}" if negative else text
