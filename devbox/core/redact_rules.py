"""The default redaction rules by name (``[redact] disable = [...]``, ``stats``) and the
placeholder key. Split out of ``devbox.core.redact`` (which re-exports them).

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping

# Every default rule, by the name used in ``[redact] disable = [...]`` and in ``stats``.
RULE_DESCRIPTIONS: Mapping[str, str] = {
    "authorization": "Authorization and Proxy-Authorization credentials (the scheme is kept), "
    "and Basic credentials or curl -u user:PASSWORD written out in text",
    "cookie": "Cookie and Set-Cookie values (cookie names and attributes are kept)",
    "token-header": "headers named like credentials: x-api-key, x-auth-token, *-token, *-secret, "
    "*-auth, *-password (not Access-Control-*, Sec-WebSocket-*, Idempotency-Key)",
    "secret-query": "query parameters, form and multipart fields named like secrets (token, "
    "secret, password, key, api_key, access_token, client_secret, ...), also name=value, "
    'name: value, "name": "value" and <name>value</name> inside data text',
    "secret-field": "JSON fields named like secrets (same names as secret-query), except "
    "JSON Schema / OpenAPI objects",
    "secret-format": "tokens recognised by their format (99: GitHub, GitLab, Stripe, Google, "
    "Slack, SendGrid, npm, PyPI, OpenAI, Twilio, Azure, Mailgun...) and provider keys with no "
    "prefix under a name that says whose they are (87: ALGOLIA_*, datadogAppKey...); the "
    "tables are in docs/redaction.md",
    "private-key": "PEM private key blocks (the BEGIN/END lines are kept)",
    "url-credentials": "passwords in URLs and connection strings (scheme://user:PASSWORD@host)",
    "generic-secret": "opaque high-entropy tokens: a whole data value (header, query, JSON "
    "string) or a quoted value next to a secret-looking keyword in code",
    "encoded": "the same secrets base64-, base64url- or URL-encoded in data text",
    "bearer": "Bearer tokens anywhere in text",
    "jwt": "JSON Web Tokens (eyJ….eyJ….sig) anywhere in text; the header part is kept",
    "email": "e-mail addresses in data (in documents and code: [redact] document_emails)",
    "card-number": "payment card numbers: 13-19 digits with a card-network prefix that pass "
    "the Luhn check, optionally grouped with spaces or dashes",
    "aws-access-key": "AWS access key ids (AKIA…, ASIA…)",
}
DEFAULT_RULES: tuple[str, ...] = tuple(RULE_DESCRIPTIONS)

DEFAULT_KEY = b"devbox-redact-v1"
KEY_ENV = "DEVBOX_REDACT_KEY"
HASH_HEX = 12
