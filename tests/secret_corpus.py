"""A corpus of secrets in the formats redaction knows, and a check that none is on disk.

``sample(rule_id, rng)`` makes a fresh secret of one format (random, so a test cannot pass
by remembering fixed values); ``near_miss(rule_id, rng)`` one that looks almost the same
but is not that format (too short, or glued to more letters). ``corpus(n_per_format)`` is
every format plus PEM keys, URL credentials, JWTs and opaque tokens. ``leaks(secrets, dir)``
looks for each secret in every file under a directory raw, JSON-escaped, URL-encoded and
base64-encoded (every base64 run in the files is decoded), and returns what it found.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
import re
import string
from pathlib import Path
from urllib.parse import quote, quote_plus, unquote, unquote_plus

A = string.ascii_letters + string.digits
U = string.ascii_uppercase + string.digits
H = "0123456789abcdef"
HM = "0123456789abcdefABCDEF"
D = string.digits
LO = string.ascii_lowercase + string.digits
L = string.ascii_letters
B = A + "_-"
S = A + "+/"

# rule id -> parts: a literal, or (alphabet, length); the near miss shortens the longest
# random part to a third (every format's random part has a minimum length above that)
SPECS: dict[str, list[str | tuple[str, int]]] = {
    "github-pat": ["ghp_", (A, 36)],
    "github-oauth": ["gho_", (A, 36)],
    "github-app-token": ["ghs_", (A, 36)],
    "github-refresh-token": ["ghr_", (A, 76)],
    "github-fine-grained-pat": ["github_pat_", (A, 22), "_", (A, 59)],
    "gitlab-pat": ["glpat-", (B, 20)],
    "gitlab-token": ["glrt-", (B, 24)],
    "stripe-secret-key": ["sk_live_", (A, 40)],
    "stripe-webhook-secret": ["whsec_", (A, 32)],
    "google-api-key": ["AIza", (B, 35)],
    "google-oauth-secret": ["GOCSPX-", (B, 28)],
    "google-oauth-token": ["ya29.", (B, 60)],
    "slack-token": ["xoxb-", (A, 24)],
    "slack-app-token": ["xapp-1-", (U, 11), "-", (D, 13), "-", (H, 64)],
    "slack-webhook": ["https://hooks.slack.com/services/", (A, 44)],
    "discord-webhook": ["https://discord.com/api/webhooks/", (D, 18), "/", (B, 68)],
    "sendgrid-api-key": ["SG.", (B, 22), ".", (B, 43)],
    "npm-token": ["npm_", (A, 36)],
    "pypi-token": ["pypi-AgEIcHlwaS5vcmc", (B, 70)],
    "openai-api-key": ["sk-proj-", (B, 74)],
    "anthropic-api-key": ["sk-ant-api03-", (B, 93)],
    "twilio-api-key": ["SK", (H, 32)],
    "azure-storage-key": ["AccountKey=", (S, 86), "=="],
    "azure-ad-client-secret": [(A, 3), (D, 1), "Q~", (A, 34)],
    "mailgun-api-key": ["key-", (H, 32)],
    "mailgun-signing-key": [(H, 32), "-", (H, 8), "-", (H, 8)],
    "mailchimp-api-key": [(H, 32), "-us", (D, 2)],
    "aws-access-key": ["AKIA", (U, 16)],
    "alibaba-access-key": ["LTAI", (A, 20)],
    "digitalocean-token": ["dop_v1_", (H, 64)],
    "shopify-token": ["shpat_", (H, 32)],
    "square-token": ["EAAA", (B, 60)],
    "square-secret": ["sq0csp-", (B, 43)],
    "telegram-bot-token": [(D, 10), ":AA", (B, 33)],
    "hashicorp-vault-token": ["hvs.", (B, 95)],
    "terraform-cloud-token": [(LO, 14), ".atlasv1.", (B, 67)],
    "doppler-token": ["dp.pt.", (A, 43)],
    "databricks-token": ["dapi", (H, 32)],
    "dynatrace-token": ["dt0c01.", (U, 24), ".", (A, 64)],
    "linear-api-key": ["lin_api_", (A, 40)],
    "postman-api-key": ["PMAK-", (H, 24), "-", (H, 34)],
    "pulumi-token": ["pul-", (H, 40)],
    "grafana-token": ["glsa_", (A, 32), "_", (H, 8)],
    "newrelic-key": ["NRAK-", (U, 27)],
    "sentry-token": ["sntrys_", (B, 80)],
    "age-secret-key": ["AGE-SECRET-KEY-1", ("QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L", 58)],
    "atlassian-token": ["ATATT3", (B, 186)],
    "huggingface-token": ["hf_", (L, 34)],
    "facebook-token": ["EAAC", (A, 120)],
    "twitter-bearer": ["A" * 22, (A, 90)],
    "mapbox-token": ["pk.eyJ", (B, 30), ".", (B, 22)],
    "clojars-token": ["CLOJARS_", (LO, 60)],
    "rubygems-key": ["rubygems_", (H, 48)],
    "contentful-token": ["CFPAT-", (B, 43)],
    "planetscale-token": ["pscale_tkn_", (B, 43)],
    "prefect-token": ["pnu_", (A, 36)],
    "readme-api-key": ["rdme_", (LO, 70)],
    "easypost-key": ["EZAK", (A, 54)],
    "duffel-token": ["duffel_live_", (B, 43)],
    "shippo-token": ["shippo_live_", (H, 40)],
    "typeform-token": ["tfp_", (B, 59)],
    "airtable-pat": ["pat", (A, 14), ".", (H, 64)],
    "notion-token": ["ntn_", (D, 11), (A, 35)],
    "supabase-token": ["sbp_", (H, 40)],
    "cloudflare-origin-ca-key": ["v1.0-", (H, 24), "-", (H, 146)],
    "flyio-token": ["fo1_", (B, 43)],
    "heroku-api-key": ["HRKU-AA", (B, 58)],
    "jfrog-api-key": ["AKCp", (A, 69)],
    "harness-token": ["pat.", (B, 22), ".", (H, 24), ".", (A, 20)],
    "1password-secret-key": ["A3-", (U, 6), "-", (U, 11), "-", (U, 5), "-", (U, 5), "-", (U, 5)],
    "1password-service-token": ["ops_eyJ", (S, 300)],
    "adobe-client-secret": ["p8e-", (A, 32)],
    "artifactory-reference-token": ["cmVmd", (A, 59)],
    "authress-key": ["sc_", (LO, 12), ".", (LO, 5), ".acc_", (LO, 20), ".", (S, 60)],
    "aws-bedrock-key": ["ABSK", (S, 150)],
    "clickhouse-cloud-key": ["4b1d", (A, 38)],
    "defined-networking-token": ["dnkey-", (B, 26), "-", (B, 52)],
    "flutterwave-key": ["FLWSECK_TEST-", ("abcdefgh0123456789", 32), "-X"],
    "frameio-token": ["fio-u-", (B, 64)],
    "gitlab-runner-registration": ["GR1348941", (B, 20)],
    "gitlab-session-cookie": ["_gitlab_session=", (LO, 32)],
    "grafana-api-key": ["eyJrIjoi", (A, 90)],
    "huggingface-org-token": ["api_org_", (L, 34)],
    "infracost-token": ["ico-", (A, 32)],
    "intra42-secret": ["s-s4t2ud-", (H, 64)],
    "mailgun-pub-key": ["pubkey-", (H, 32)],
    "maxmind-license-key": [(A, 6), "_", (A, 29), "_mmk"],
    "teams-webhook": [
        "https://",
        (LO, 8),
        ".webhook.office.com/webhookb2/",
        (LO, 8),
        "-",
        (LO, 4),
        "-",
        (LO, 4),
        "-",
        (LO, 4),
        "-",
        (LO, 12),
        "@",
        (LO, 8),
        "-",
        (LO, 4),
        "-",
        (LO, 4),
        "-",
        (LO, 4),
        "-",
        (LO, 12),
        "/IncomingWebhook/",
        (LO, 32),
        "/",
        (LO, 8),
        "-",
        (LO, 4),
        "-",
        (LO, 4),
        "-",
        (LO, 4),
        "-",
        (LO, 12),
    ],
    "octopus-deploy-key": ["API-", (U, 26)],
    "openshift-token": ["sha256~", (B, 43)],
    "perplexity-key": ["pplx-", (A, 48)],
    "plaid-access-token": [
        "access-sandbox-",
        (H, 8),
        "-",
        (H, 4),
        "-",
        (H, 4),
        "-",
        (H, 4),
        "-",
        (H, 12),
    ],
    "scalingo-token": ["tk-us-", (B, 48)],
    "sendinblue-key": ["xkeysib-", (H, 64), "-", (A, 16)],
    "settlemint-token": ["sm_pat_", (A, 16)],
    "slack-config-token": ["xoxe.xoxp-1-", (A, 164)],
    "sourcegraph-token": ["sgp_", (H, 16), "_", (H, 40)],
    "yandex-api-key": ["AQVN", (B, 36)],
    "facebook-app-token": [(D, 15), "|", (B, 32)],
}

UUID: list[str | tuple[str, int]] = [(H, 8), "-", (H, 4), "-", (H, 4), "-", (H, 4), "-", (H, 12)]

# keyword rules (devbox/core/secret_keywords.py): the value's shape, generated the same way;
# the secret travels under a name holding the provider's keyword (see ``keyword_name``)
KEYWORD_SPECS: dict[str, list[str | tuple[str, int]]] = {
    "adafruit-api-key": [(B, 32)],
    "adobe-client-id": [(H, 32)],
    "airtable-api-key": [(A, 17)],
    "algolia-api-key": [(A, 32)],
    "alibaba-secret-key": [(A, 30)],
    "asana-client-id": [(D, 16)],
    "asana-client-secret": [(A, 32)],
    "atlassian-api-token": [(A, 24)],
    "beamer-api-token": ["b_", (B, 44)],
    "bitbucket-client-id": [(A, 32)],
    "bitbucket-client-secret": [(B, 64)],
    "bittrex-key": [(A, 32)],
    "cisco-meraki-api-key": [(H, 40)],
    "cloudflare-api-key": [(B, 40)],
    "cloudflare-global-api-key": [(H, 37)],
    "codecov-access-token": [(A, 32)],
    "cohere-api-token": [(A, 40)],
    "coinbase-access-token": [(B, 64)],
    "confluent-access-token": [(A, 16)],
    "confluent-secret-key": [(A, 64)],
    "contentful-delivery-token": [(B, 43)],
    "datadog-access-token": [(A, 40)],
    "discord-api-token": [(H, 64)],
    "discord-client-id": [(D, 18)],
    "discord-client-secret": [(B, 32)],
    "droneci-access-token": [(A, 32)],
    "dropbox-api-token": [(A, 15)],
    "dropbox-long-lived-token": [(A, 11), "AAAAAAAAAA", (B, 43)],
    "dropbox-short-lived-token": ["sl.", (B, 135)],
    "etsy-access-token": [(A, 24)],
    "facebook-secret": [(H, 32)],
    "fastly-api-token": [(B, 32)],
    "finicity-api-token": [(H, 32)],
    "finicity-client-secret": [(A, 20)],
    "finnhub-access-token": [(A, 20)],
    "flickr-access-token": [(A, 32)],
    "freemius-secret-key": ["sk_", (A, 29)],
    "freshbooks-access-token": [(A, 64)],
    "gitter-access-token": [(B, 40)],
    "gocardless-api-token": ["live_", (B, 40)],
    "heroku-api-key-v1": UUID,
    "hubspot-api-key": UUID,
    "intercom-api-key": [(B, 60)],
    "jfrog-api-key-named": [(A, 73)],
    "jfrog-identity-token": [(A, 64)],
    "kraken-access-token": [(S, 86)],
    "kucoin-access-token": [(H, 24)],
    "kucoin-secret-key": UUID,
    "launchdarkly-access-token": [(B, 40)],
    "linear-client-secret": [(H, 32)],
    "linkedin-client-id": [(A, 14)],
    "linkedin-client-secret": [(A, 16)],
    "lob-api-key": ["live_", (H, 35)],
    "lob-pub-api-key": ["test_pub_", (H, 31)],
    "looker-client-id": [(A, 20)],
    "looker-client-secret": [(A, 24)],
    "mattermost-access-token": [(A, 26)],
    "messagebird-api-token": [(A, 25)],
    "messagebird-client-id": UUID,
    "netlify-access-token": [(B, 43)],
    "newrelic-user-api-id": [(A, 64)],
    "nytimes-access-token": [(B, 32)],
    "okta-access-token": ["00", (B, 40)],
    "plaid-client-id": [(A, 24)],
    "plaid-secret-key": [(A, 30)],
    "privateai-api-token": [(A, 32)],
    "rapidapi-access-token": [(B, 50)],
    "sendbird-access-id": UUID,
    "sendbird-access-token": [(H, 40)],
    "sentry-access-token": [(H, 64)],
    "sidekiq-secret": [(H, 8), ":", (H, 8)],
    "snyk-api-token": UUID,
    "sonar-api-token": ["squ_", (B, 40)],
    "squarespace-access-token": UUID,
    "sumologic-access-id": ["su", (A, 12)],
    "sumologic-access-token": [(A, 64)],
    "telegram-bot-token-named": [(D, 10), ":A", (B, 34)],
    "travisci-access-token": [(A, 22)],
    "twitch-api-token": [(A, 30)],
    "twitter-access-secret": [(A, 45)],
    "twitter-access-token": [(D, 19), "-", (A, 30)],
    "twitter-api-key": [(A, 25)],
    "twitter-api-secret": [(A, 50)],
    "vault-legacy-token": ["s.", (A, 24)],
    "yandex-access-token": ["t1.", (B, 40), ".", (B, 86)],
    "yandex-aws-access-token": ["YC", (B, 38)],
    "zendesk-secret-key": [(A, 40)],
}


def keyword_name(rule_id: str) -> str:
    """A name that says whose the value is and nothing else (no secret word in it)."""
    from devbox.core.secret_keywords import RULES_BY_ID

    return RULES_BY_ID[rule_id].keywords[0] + "_ref"


def _random(alphabet: str, n: int, rng: random.Random) -> str:
    # mixed case and a digit wherever the alphabet allows: a real key always has them
    while True:
        s = "".join(rng.choice(alphabet) for _ in range(n))
        mixed = all(any(f(c) for c in s) for f in (str.isupper, str.islower, str.isdigit))
        if n < 8 or alphabet not in (A, B, S) or mixed:
            return s


def _spec(rule_id: str) -> list[str | tuple[str, int]]:
    return SPECS[rule_id] if rule_id in SPECS else KEYWORD_SPECS[rule_id]


def sample(rule_id: str, rng: random.Random) -> str:
    return "".join(p if isinstance(p, str) else _random(*p, rng) for p in _spec(rule_id))


def near_miss(rule_id: str, rng: random.Random) -> str:
    parts = _spec(rule_id)
    longest = max((p for p in parts if not isinstance(p, str)), key=lambda p: p[1])
    out = []
    for p in parts:
        if isinstance(p, str):
            out.append(p)
        else:
            out.append(_random(p[0], p[1] // 3 if p is longest else p[1], rng))
    return "".join(out)


def pem(rng: random.Random) -> str:
    body = base64.b64encode(rng.randbytes(600)).decode()
    lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN RSA PRIVATE KEY-----\n{lines}\n-----END RSA PRIVATE KEY-----"


def jwt(rng: random.Random) -> str:
    def part(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    payload = {"sub": _random(A, 12, rng), "exp": rng.randint(10**9, 2 * 10**9)}
    sig = base64.urlsafe_b64encode(rng.randbytes(32)).decode().rstrip("=")
    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(payload)}.{sig}"


def corpus(per_format: int = 3, seed: int = 13) -> list[tuple[str, str]]:
    """(format, secret) pairs: every format of the table ``per_format`` times, plus JWTs,
    URL passwords and opaque tokens. PEM keys are kept apart (``pems``): they hold line
    breaks, so they cannot travel in a header or a query."""
    rng = random.Random(seed)
    out = [(rid, sample(rid, rng)) for rid in SPECS for _ in range(per_format)]
    out += [("jwt", jwt(rng)) for _ in range(per_format)]
    out += [("opaque-token", _random(A, 40, rng)) for _ in range(per_format)]
    return out


def keyword_corpus(per_rule: int = 1, seed: int = 16) -> list[tuple[str, str, str]]:
    """(rule, name, secret) for every keyword rule: the name holds the provider's keyword."""
    rng = random.Random(seed)
    return [
        (rid, keyword_name(rid), sample(rid, rng)) for rid in KEYWORD_SPECS for _ in range(per_rule)
    ]


def url_passwords(n: int = 3, seed: int = 14) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    return [("url-password", _random(A, 20, rng)) for _ in range(n)]


def pems(n: int = 2, seed: int = 15) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    return [("private-key", pem(rng)) for _ in range(n)]


# ---------------------------------------------------------------- looking for leaks

_B64_RUN = re.compile(r"[A-Za-z0-9+/_\-]{16,}={0,2}")


def _decodings(text: str) -> list[str]:
    views = [text, unquote(text), unquote_plus(text)]
    for view in list(views):
        for m in _B64_RUN.finditer(view):
            run = m.group(0).rstrip("=")
            for dec in (base64.b64decode, base64.urlsafe_b64decode):
                for cut in range(4):  # a run may start mid-quantum of a bigger encoding
                    piece = run[cut:]
                    piece = piece[: len(piece) - len(piece) % 4]
                    try:
                        views.append(dec(piece).decode("utf-8", "replace"))
                    except (binascii.Error, ValueError):
                        pass
    return views


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def leaks(secrets: list[tuple[str, str]], directory: Path) -> list[tuple[str, str, str]]:
    """(format, secret prefix, file) for each secret found in any form under ``directory``."""
    found = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        raw = path.read_bytes().decode("utf-8", "replace")
        views = _decodings(raw)
        try:
            # a JSON stream (a recording): every string in it, unescaped, decoded again
            objs = [json.loads(chunk) for chunk in re.split(r"(?m)^(?=\{)", raw) if chunk.strip()]
        except json.JSONDecodeError:
            objs = []
        for s in _strings(objs):
            views.extend(_decodings(s))
        for fmt, secret in secrets:
            forms = {secret, json.dumps(secret)[1:-1], quote(secret, safe=""), quote_plus(secret)}
            core = secret.strip().splitlines()[1] if "\n" in secret else secret
            if any(f in raw for f in forms) or any(core in v for v in views):
                found.append((fmt, secret[:16], path.name))
    return found
