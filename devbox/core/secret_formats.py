"""Secrets recognised by what they are: the table of token formats redaction looks for.

Each rule is a regular expression for one kind of credential whose shape alone says it is
one (a fixed prefix, a fixed length, a checksum-like structure): GitHub, Stripe, Google,
Slack, SendGrid, GitLab, npm, OpenAI... The set follows the default rules of gitleaks and
detect-secrets (the providers and their documented token shapes), written for this table.
Formats that are only recognisable next to a keyword (an AWS secret access key, a Twilio
auth token: 40 or 32 characters of nothing in particular) are covered by the name rules
and the keyword-plus-entropy rule in ``redact_text``, not here.

``keep`` is the part of a match that stays visible in the placeholder: the prefix that
tells a reader (and a consumer that checks it) what kind of key this was, so
``sk_live_51H…`` becomes ``sk_live_<redacted:stripe-secret-key:…>``.

Pure: no I/O.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FormatRule:
    id: str  # also the placeholder kind: [a-z0-9-], at most 40 characters
    pattern: str  # no capturing groups: the rule's match is the secret
    keep: str = ""  # a regex matched at the start of the secret: kept in clear
    description: str = ""


_B62 = "A-Za-z0-9"
_B64URL = "A-Za-z0-9_\\-"

FORMAT_RULES: tuple[FormatRule, ...] = (
    FormatRule("github-pat", r"ghp_[A-Za-z0-9]{36}", "ghp_", "GitHub personal access token"),
    FormatRule("github-oauth", r"gho_[A-Za-z0-9]{36}", "gho_", "GitHub OAuth access token"),
    FormatRule("github-app-token", r"gh[us]_[A-Za-z0-9]{36}", "gh[us]_", "GitHub App token"),
    FormatRule("github-refresh-token", r"ghr_[A-Za-z0-9]{36,76}", "ghr_", "GitHub refresh"),
    FormatRule(
        "github-fine-grained-pat",
        r"github_pat_[A-Za-z0-9_]{82}",
        "github_pat_",
        "GitHub fine-grained personal access token",
    ),
    FormatRule("gitlab-pat", r"glpat-[A-Za-z0-9_\-]{20,}", "glpat-", "GitLab personal token"),
    FormatRule(
        "gitlab-token",
        r"gl(?:ptt|rt|dt|ft|soat|cbt|imt|agent)-[A-Za-z0-9_\-]{20,}",
        r"gl[a-z]+-",
        "GitLab pipeline, runner, deploy, feed, agent or OAuth token",
    ),
    FormatRule(
        "stripe-secret-key",
        r"(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,247}",
        r"[rs]k_[a-z]+_",
        "Stripe secret or restricted key",
    ),
    FormatRule("stripe-webhook-secret", r"whsec_[A-Za-z0-9]{32,}", "whsec_", "Stripe webhook"),
    FormatRule("google-api-key", r"AIza[A-Za-z0-9_\-]{35}", "AIza", "Google API key"),
    FormatRule(
        "google-oauth-secret", r"GOCSPX-[A-Za-z0-9_\-]{28}", "GOCSPX-", "Google OAuth secret"
    ),
    FormatRule("google-oauth-token", r"ya29\.[A-Za-z0-9_\-]{30,}", r"ya29\.", "Google token"),
    FormatRule(
        "slack-token",
        r"xox[abposr]-(?:\d+-)?[A-Za-z0-9-]{10,250}",
        r"xox[a-z]-",
        "Slack bot, user, app-level or legacy token",
    ),
    FormatRule(
        "slack-app-token", r"xapp-\d-[A-Z0-9]+-\d+-[a-z0-9]{32,}", r"xapp-", "Slack app token"
    ),
    FormatRule(
        "slack-webhook",
        r"https?://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9+/_\-]{20,}",
        r"https?://hooks\.slack\.com/[a-z]+/",
        "Slack incoming webhook URL",
    ),
    FormatRule(
        "discord-webhook",
        r"https?://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/\d+/[A-Za-z0-9_\-]{60,}",
        r"https?://[a-z.]*discord(?:app)?\.com/api/webhooks/",
        "Discord webhook URL",
    ),
    FormatRule(
        "sendgrid-api-key", r"SG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}", r"SG\.", "SendGrid"
    ),
    FormatRule("npm-token", r"npm_[A-Za-z0-9]{36}", "npm_", "npm access token"),
    FormatRule(
        "pypi-token", r"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_\-]{50,}", "pypi-", "PyPI upload token"
    ),
    FormatRule(
        "openai-api-key",
        r"sk-(?:(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{40,}|[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20})",
        r"sk-(?:proj-|svcacct-|admin-)?",
        "OpenAI API key",
    ),
    FormatRule(
        "anthropic-api-key",
        r"sk-ant-(?:api|admin)\d\d-[A-Za-z0-9_\-]{80,}",
        r"sk-ant-[a-z]+\d\d-",
        "Anthropic API key",
    ),
    FormatRule("twilio-api-key", r"SK[0-9a-fA-F]{32}", "SK", "Twilio API key SID"),
    FormatRule(
        "azure-storage-key",
        r"AccountKey=[A-Za-z0-9+/]{86}==",
        "AccountKey=",
        "Azure storage account key (in a connection string)",
    ),
    FormatRule(
        "azure-ad-client-secret",
        r"[A-Za-z0-9_~.]{3}\dQ~[A-Za-z0-9_~.\-]{31,34}",
        "",
        "Azure AD (Entra) client secret",
    ),
    FormatRule("mailgun-api-key", r"key-[0-9a-f]{32}", "key-", "Mailgun API key"),
    FormatRule(
        "mailgun-signing-key", r"[0-9a-f]{32}-[0-9a-f]{8}-[0-9a-f]{8}", "", "Mailgun signing"
    ),
    FormatRule("mailchimp-api-key", r"[0-9a-f]{32}-us\d{1,2}", "", "Mailchimp API key"),
    FormatRule(
        "aws-access-key",
        r"(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|A3T[A-Z0-9])[A-Z0-9]{16}",
        "",
        "AWS access key id (AKIA…, ASIA…)",
    ),
    FormatRule("alibaba-access-key", r"LTAI[A-Za-z0-9]{20}", "LTAI", "Alibaba Cloud key id"),
    FormatRule(
        "digitalocean-token", r"do[opr]_v1_[a-f0-9]{64}", r"do[opr]_v1_", "DigitalOcean token"
    ),
    FormatRule(
        "shopify-token", r"shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}", r"shp[a-z]{2}_", "Shopify token"
    ),
    FormatRule("square-token", r"(?:EAAA|sq0atp-)[A-Za-z0-9_\-]{22,60}", r"EAAA|sq0atp-", "Square"),
    FormatRule("square-secret", r"sq0csp-[A-Za-z0-9_\-]{43}", "sq0csp-", "Square OAuth secret"),
    FormatRule("telegram-bot-token", r"\d{8,10}:AA[A-Za-z0-9_\-]{33}", "", "Telegram bot token"),
    FormatRule("hashicorp-vault-token", r"hv[sb]\.[A-Za-z0-9_\-]{90,}", r"hv[sb]\.", "Vault"),
    FormatRule(
        "terraform-cloud-token",
        r"[a-z0-9]{14}\.atlasv1\.[A-Za-z0-9_=\-]{60,70}",
        "",
        "Terraform Cloud / HCP API token",
    ),
    FormatRule("doppler-token", r"dp\.pt\.[A-Za-z0-9]{43}", r"dp\.pt\.", "Doppler token"),
    FormatRule("databricks-token", r"dapi[a-f0-9]{32}(?:-\d)?", "dapi", "Databricks token"),
    FormatRule(
        "dynatrace-token", r"dt0c01\.[A-Za-z0-9]{24}\.[A-Za-z0-9]{64}", r"dt0c01\.", "Dynatrace"
    ),
    FormatRule("linear-api-key", r"lin_api_[A-Za-z0-9]{40}", "lin_api_", "Linear API key"),
    FormatRule("postman-api-key", r"PMAK-[a-f0-9]{24}-[a-f0-9]{34}", "PMAK-", "Postman API key"),
    FormatRule("pulumi-token", r"pul-[a-f0-9]{40}", "pul-", "Pulumi access token"),
    FormatRule(
        "grafana-token",
        r"gl(?:c_[A-Za-z0-9+/]{32,400}={0,2}|sa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8})",
        r"gl(?:c|sa)_",
        "Grafana cloud or service-account token",
    ),
    FormatRule("newrelic-key", r"NR(?:AK|II|JS)-[A-Za-z0-9]{27}", r"NR[A-Z]{2}-", "New Relic"),
    FormatRule(
        "sentry-token", r"sntry[us]_[A-Za-z0-9+/=_\-]{40,}", r"sntry[us]_", "Sentry auth token"
    ),
    FormatRule(
        "age-secret-key",
        r"AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}",
        "AGE-SECRET-KEY-1",
        "age encryption secret key",
    ),
    FormatRule("atlassian-token", r"ATATT3[A-Za-z0-9_\-=]{150,}", "ATATT3", "Atlassian token"),
    FormatRule("huggingface-token", r"hf_[A-Za-z]{34}", "hf_", "Hugging Face access token"),
    FormatRule(
        "facebook-token", r"EAA[CM][A-Za-z0-9]{90,}", "EAA[CM]", "Facebook/Meta access token"
    ),
    FormatRule("twitter-bearer", r"A{22}[A-Za-z0-9%]{80,}", "", "Twitter/X app bearer token"),
    FormatRule(
        "mapbox-token",
        r"[ps]k\.eyJ[A-Za-z0-9_\-]{20,}\.[A-Za-z0-9_\-]{20,}",
        r"[ps]k\.",
        "Mapbox access token",
    ),
    FormatRule("clojars-token", r"CLOJARS_[a-z0-9]{60}", "CLOJARS_", "Clojars deploy token"),
    FormatRule("rubygems-key", r"rubygems_[a-f0-9]{48}", "rubygems_", "RubyGems API key"),
    FormatRule("contentful-token", r"CFPAT-[A-Za-z0-9_\-]{43}", "CFPAT-", "Contentful token"),
    FormatRule(
        "planetscale-token",
        r"pscale_(?:tkn|pw|oauth)_[A-Za-z0-9=\-_.]{32,64}",
        r"pscale_[a-z]+_",
        "PlanetScale token or password",
    ),
    FormatRule("prefect-token", r"pnu_[A-Za-z0-9]{36}", "pnu_", "Prefect API key"),
    FormatRule("readme-api-key", r"rdme_[a-z0-9]{70}", "rdme_", "ReadMe API key"),
    FormatRule("easypost-key", r"EZ[AT]K[A-Za-z0-9]{54}", r"EZ[AT]K", "EasyPost API key"),
    FormatRule(
        "duffel-token", r"duffel_(?:test|live)_[A-Za-z0-9_\-=]{43}", r"duffel_[a-z]+_", "Duffel"
    ),
    FormatRule(
        "shippo-token", r"shippo_(?:live|test)_[a-fA-F0-9]{40}", r"shippo_[a-z]+_", "Shippo"
    ),
    FormatRule("typeform-token", r"tfp_[A-Za-z0-9_\-.=]{59}", "tfp_", "Typeform token"),
    FormatRule(
        "airtable-pat", r"pat[A-Za-z0-9]{14}\.[a-f0-9]{64}", "pat", "Airtable personal token"
    ),
    FormatRule(
        "notion-token",
        r"(?:secret_[A-Za-z0-9]{43}|ntn_\d{11}[A-Za-z0-9]{35})",
        r"secret_|ntn_",
        "Notion integration token",
    ),
    FormatRule("supabase-token", r"sbp_[a-f0-9]{40}", "sbp_", "Supabase access token"),
    FormatRule(
        "cloudflare-origin-ca-key", r"v1\.0-[a-f0-9]{24}-[a-f0-9]{146}", r"v1\.0-", "Cloudflare"
    ),
    FormatRule("flyio-token", r"fo1_[A-Za-z0-9_\-]{43}", "fo1_", "Fly.io access token"),
    FormatRule("heroku-api-key", r"HRKU-AA[A-Za-z0-9_\-]{58}", "HRKU-", "Heroku platform API key"),
    FormatRule("jfrog-api-key", r"AKCp[A-Za-z0-9]{69}", "AKCp", "JFrog Artifactory API key"),
    FormatRule(
        "harness-token",
        r"pat\.[A-Za-z0-9_\-]{22}\.[0-9a-f]{24}\.[A-Za-z0-9]{20}",
        r"pat\.",
        "Harness personal access token",
    ),
)

# The shared boundary: a format rule never matches inside a longer run of letters/digits
# ("xghp_…", "…ghp_…z"), which is what makes the near-miss negatives miss.
_LEFT = r"(?<![A-Za-z0-9])"
_RIGHT = r"(?![A-Za-z0-9])"

RULES_BY_ID: dict[str, FormatRule] = {r.id: r for r in FORMAT_RULES}
_GROUP_OF: dict[str, FormatRule] = {f"f{i}": r for i, r in enumerate(FORMAT_RULES)}
_KEEP: dict[str, re.Pattern[str]] = {r.id: re.compile(r.keep) for r in FORMAT_RULES if r.keep}


def formats_alternation(rules: tuple[FormatRule, ...] = FORMAT_RULES) -> str:
    """One alternation of every rule, each in a group ``f<index>`` (see ``rule_of_group``)."""
    index = {r.id: i for i, r in enumerate(FORMAT_RULES)}
    return "|".join(f"(?P<f{index[r.id]}>{_LEFT}(?:{r.pattern}){_RIGHT})" for r in rules)


def rule_of_group(group: str) -> FormatRule | None:
    return _GROUP_OF.get(group)


def kept_prefix(rule_id: str, secret: str) -> str:
    """The part of ``secret`` its rule keeps in clear ("" when none)."""
    keep = _KEEP.get(rule_id)
    if keep is None:
        return ""
    m = keep.match(secret)
    return m.group(0) if m else ""


_WHOLE = re.compile(f"(?:{formats_alternation()})")


def format_of(value: str) -> FormatRule | None:
    """The rule whose format ``value`` is exactly, if any."""
    m = _WHOLE.fullmatch(value)
    if m is None or m.lastgroup is None:
        return None
    return _GROUP_OF.get(m.lastgroup)


def shannon_entropy(s: str) -> float:
    """Bits per character of ``s`` (random base64 is near 6, English words near 3)."""
    if not s:
        return 0.0
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values())


_TOKEN = re.compile(r"[A-Za-z0-9_\-+/=.~]{20,512}")
_UUID = re.compile(r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")
_HEX = re.compile(r"[0-9a-fA-F]+")
_WORDY = re.compile(r"[a-z]{4,}")
_HASHLIKE = re.compile(r"(?:sha|md)\d*[-=]", re.I)  # sha512-… subresource integrity


def looks_random(value: str) -> bool:
    """Whether a whole value is an opaque high-entropy token (an API key, a session id):
    20+ token characters with upper case, lower case and digits mixed, no run of four
    lower-case letters in a row more than twice (words, paths, identifiers), high
    entropy. Pure hexadecimal (hashes, ETags, trace ids) and UUIDs are not: they are ids
    far more often than secrets, and secrets in those shapes are found by their names."""
    if not _TOKEN.fullmatch(value) or _HEX.fullmatch(value) or _UUID.fullmatch(value):
        return False
    if not (
        any(c.isupper() for c in value)
        and any(c.islower() for c in value)
        and any(c.isdigit() for c in value)
    ):
        return False
    if len(_WORDY.findall(value)) > 2 or value.startswith(("/", "http")) or _HASHLIKE.match(value):
        return False
    return shannon_entropy(value) >= (3.5 if len(value) < 32 else 4.0)
