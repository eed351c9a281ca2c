"""URL path converters shared by the project's URLconfs."""
from django.urls import register_converter


class RowIdConverter:
    """
    A database id in a URL: 1 to 18 ASCII digits. Django's `int` converter takes any number of digits, and an id past
    64 bits overflows the query (a 500); such a URL now simply does not match (404).
    """

    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value) -> str:
        return str(value)


register_converter(RowIdConverter, "rowid")
