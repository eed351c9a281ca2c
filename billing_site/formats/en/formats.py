# One date format per language on the customer pages and emails: "14 Dec 2026" (issue 13). Django's own defaults
# mix "Dec. 14, 2026" with "12/14/2026"; every customer template uses DATE_FORMAT (and DATETIME_FORMAT with a time).
DATE_FORMAT = "j M Y"
DATETIME_FORMAT = "j M Y, H:i"
SHORT_DATE_FORMAT = "j M Y"
SHORT_DATETIME_FORMAT = "j M Y, H:i"
