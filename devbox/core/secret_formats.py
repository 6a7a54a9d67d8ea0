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

import base64
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
    FormatRule(
        "gitlab-pat",
        r"glpat-[A-Za-z0-9_\-]{20,}(?:\.[0-9a-z]{9})?",
        "glpat-",
        "GitLab personal token",
    ),
    FormatRule(
        "gitlab-token",
        r"gl(?:ptt|rt|dt|ft|soat|cbt|imt|agent|ffct|oas)-[A-Za-z0-9_\-]{20,}"
        r"(?:\.[0-9a-z]{9})?",
        r"gl[a-z]+-",
        "GitLab pipeline, runner, deploy, feed, agent or OAuth token",
    ),
    FormatRule(
        "stripe-secret-key",
        r"[rs]k_(?:live|test|prod)_[A-Za-z0-9]{16,247}",
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
        r"xox[abposre]-(?:\d+-)?[A-Za-z0-9-]{10,250}",
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
        r"[A-Za-z0-9_~.][A-Za-z0-9_~.]{2}\dQ~[A-Za-z0-9_~.\-]{31,34}",
        "",
        "Azure AD (Entra) client secret",
    ),
    FormatRule("mailgun-api-key", r"key-[0-9a-f]{32}", "key-", "Mailgun API key"),
    FormatRule(
        "mailgun-signing-key",
        r"[0-9a-f][0-9a-f]{31}-[0-9a-f]{8}-[0-9a-f]{8}",
        "",
        "Mailgun signing",
    ),
    FormatRule("mailchimp-api-key", r"[0-9a-f][0-9a-f]{31}-us\d{1,2}", "", "Mailchimp API key"),
    FormatRule(
        "aws-access-key",
        r"A(?:KIA|SIA|BIA|CCA|GPA|IDA|ROA|IPA|NPA|NVA|3T[A-Z0-9])[A-Z0-9]{16}",
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
    FormatRule(
        "square-token", r"[Es](?:AAA|q0atp-)[A-Za-z0-9_\-]{22,60}", r"EAAA|sq0atp-", "Square"
    ),
    FormatRule("square-secret", r"sq0csp-[A-Za-z0-9_\-]{43}", "sq0csp-", "Square OAuth secret"),
    FormatRule("telegram-bot-token", r"\d\d{7,9}:AA[A-Za-z0-9_\-]{33}", "", "Telegram bot token"),
    FormatRule("hashicorp-vault-token", r"hv[sb]\.[A-Za-z0-9_\-]{90,}", r"hv[sb]\.", "Vault"),
    FormatRule(
        "terraform-cloud-token",
        r"[a-z0-9][a-z0-9]{13}\.atlasv1\.[A-Za-z0-9_=\-]{60,70}",
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
    FormatRule(
        "newrelic-key",
        r"NR(?:AK-[A-Za-z0-9]{27}|JS-[a-f0-9]{19}|II-[A-Za-z0-9\-]{32})",
        r"NR[A-Z]{2}-",
        "New Relic user, browser or insert key",
    ),
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
    FormatRule("twitter-bearer", r"AA{21}[A-Za-z0-9%]{80,}", "", "Twitter/X app bearer token"),
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
        r"[sn](?:ecret_[A-Za-z0-9]{43}|tn_\d{11}[A-Za-z0-9]{35})",
        r"secret_|ntn_",
        "Notion integration token",
    ),
    FormatRule("supabase-token", r"sbp_[a-f0-9]{40}", "sbp_", "Supabase access token"),
    FormatRule(
        "cloudflare-origin-ca-key", r"v1\.0-[a-f0-9]{24}-[a-f0-9]{146}", r"v1\.0-", "Cloudflare"
    ),
    FormatRule(
        "flyio-token",
        r"f(?:o1_[A-Za-z0-9_\-]{43}|m(?:1[ar]|2)_[A-Za-z0-9+/]{100,}={0,3})",
        r"f[om][12][ar]?_",
        "Fly.io access token or macaroon",
    ),
    FormatRule("heroku-api-key", r"HRKU-AA[A-Za-z0-9_\-]{58}", "HRKU-", "Heroku platform API key"),
    FormatRule("jfrog-api-key", r"AKCp[A-Za-z0-9]{69}", "AKCp", "JFrog Artifactory API key"),
    FormatRule(
        "harness-token",
        r"pat\.[A-Za-z0-9_\-]{22}\.[0-9a-f]{24}\.[A-Za-z0-9]{20}",
        r"pat\.",
        "Harness personal access token",
    ),
    FormatRule(
        "1password-secret-key",
        r"A3-[A-Z0-9]{6}-(?:[A-Z0-9]{11}|[A-Z0-9]{6}-[A-Z0-9]{5})-[A-Z0-9]{5}-[A-Z0-9]{5}-[A-Z0-9]{5}",
        "A3-",
        "1Password account secret key",
    ),
    FormatRule(
        "1password-service-token", r"ops_eyJ[A-Za-z0-9+/]{250,}={0,3}", "ops_", "1Password SA"
    ),
    FormatRule("adobe-client-secret", r"p8e-[A-Za-z0-9]{32}", "p8e-", "Adobe client secret"),
    FormatRule("artifactory-reference-token", r"cmVmd[A-Za-z0-9]{59}", "", "JFrog reference"),
    FormatRule(
        "authress-key",
        r"[sea](?:cauth|c|xt|uthress)_[A-Za-z0-9]{5,30}\.[A-Za-z0-9]{4,6}\.acc[_\-]"
        r"[A-Za-z0-9\-]{10,32}\.[A-Za-z0-9+/_=\-]{30,120}",
        r"[a-z]+_",
        "Authress service client access key",
    ),
    FormatRule(
        "aws-bedrock-key",
        r"[Ab](?:BSK[A-Za-z0-9+/]{109,269}={0,2}"
        r"|edrock-api-key-YmVkcm9jay5hbWF6b25hd3MuY29t[A-Za-z0-9+/=]{16,2000})",
        r"ABSK|bedrock-api-key-",
        "Amazon Bedrock API key (long- or short-lived)",
    ),
    FormatRule("clickhouse-cloud-key", r"4b1d[A-Za-z0-9]{38}", "4b1d", "ClickHouse Cloud key"),
    FormatRule(
        "defined-networking-token",
        r"dnkey-[A-Za-z0-9=_\-]{26}-[A-Za-z0-9=_\-]{52}",
        "dnkey-",
        "Defined Networking API token",
    ),
    FormatRule(
        "flutterwave-key",
        r"FLW(?:(?:SECK|PUBK)_TEST-[a-hA-H0-9]{32}-X|SECK_TEST[a-hA-H0-9]{12})",
        r"FLW[A-Z]+_TEST-?",
        "Flutterwave secret, public or encryption key",
    ),
    FormatRule("frameio-token", r"fio-u-[A-Za-z0-9\-_=]{64}", "fio-u-", "Frame.io API token"),
    FormatRule(
        "gitlab-runner-registration", r"GR1348941[A-Za-z0-9_\-]{20}", "GR1348941", "GitLab RRT"
    ),
    FormatRule(
        "gitlab-session-cookie",
        r"_gitlab_session=[0-9a-z]{32}",
        "_gitlab_session=",
        "GitLab session cookie",
    ),
    FormatRule(
        "grafana-api-key", r"eyJrIjoi[A-Za-z0-9]{70,400}={0,3}", "eyJrIjoi", "Grafana API key"
    ),
    FormatRule("huggingface-org-token", r"api_org_[A-Za-z]{34}", "api_org_", "Hugging Face org"),
    FormatRule("infracost-token", r"ico-[A-Za-z0-9]{32}", "ico-", "Infracost API token"),
    FormatRule(
        "intra42-secret", r"s-s4t2(?:ud|af)-[a-f0-9]{64}", r"s-s4t2[a-z]{2}-", "42 client secret"
    ),
    FormatRule("mailgun-pub-key", r"pubkey-[a-f0-9]{32}", "pubkey-", "Mailgun public key"),
    FormatRule(
        "maxmind-license-key",
        r"[A-Za-z0-9][A-Za-z0-9]{5}_[A-Za-z0-9]{29}_mmk",
        "",
        "MaxMind license key",
    ),
    FormatRule(
        "teams-webhook",
        r"https://[a-z0-9]+\.webhook\.office\.com/webhookb2/[a-z0-9]{8}-(?:[a-z0-9]{4}-){3}"
        r"[a-z0-9]{12}@[a-z0-9]{8}-(?:[a-z0-9]{4}-){3}[a-z0-9]{12}/IncomingWebhook/"
        r"[a-z0-9]{32}/[a-z0-9]{8}-(?:[a-z0-9]{4}-){3}[a-z0-9]{12}",
        r"https://[a-z0-9]+\.webhook\.office\.com/webhookb2/",
        "Microsoft Teams incoming webhook URL",
    ),
    FormatRule("octopus-deploy-key", r"API-[A-Z0-9]{26}", "API-", "Octopus Deploy API key"),
    FormatRule("openshift-token", r"sha256~[A-Za-z0-9_\-]{43}", "sha256~", "OpenShift token"),
    FormatRule("perplexity-key", r"pplx-[A-Za-z0-9]{48}", "pplx-", "Perplexity API key"),
    FormatRule(
        "plaid-access-token",
        r"access-(?:sandbox|development|production)-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}"
        r"-[0-9a-f]{4}-[0-9a-f]{12}",
        r"access-[a-z]+-",
        "Plaid access token",
    ),
    FormatRule("scalingo-token", r"tk-us-[A-Za-z0-9_\-]{48}", "tk-us-", "Scalingo API token"),
    FormatRule(
        "sendinblue-key",
        r"xkeysib-[a-f0-9]{64}-[A-Za-z0-9]{16}",
        "xkeysib-",
        "Brevo (Sendinblue) API key",
    ),
    FormatRule(
        "settlemint-token", r"sm_(?:pat|aat|sat)_[A-Za-z0-9]{16}", r"sm_[a-z]{3}_", "SettleMint"
    ),
    FormatRule(
        "slack-config-token",
        r"xoxe(?:\.xox[bp])?-\d-[A-Za-z0-9]{146,166}",
        r"xoxe(?:\.xox[bp])?-",
        "Slack configuration access or refresh token",
    ),
    FormatRule(
        "sourcegraph-token",
        r"sgp_(?:(?:[a-fA-F0-9]{16}|local)_)?[a-fA-F0-9]{40}",
        "sgp_",
        "Sourcegraph access token",
    ),
    FormatRule("yandex-api-key", r"AQVN[A-Za-z0-9_\-]{35,38}", "AQVN", "Yandex Cloud API key"),
    FormatRule(
        "facebook-app-token",
        r"\d\d{14,15}(?:\||%7[Cc])[0-9A-Za-z\-_]{27,40}",
        "",
        "Facebook app access token (app id|secret)",
    ),
)

# The shared boundary: a format rule never matches inside a longer run of letters/digits
# ("xghp_…", "…ghp_…z"), which is what makes the near-miss negatives miss.
_LEFT = r"(?<![A-Za-z0-9])"
_RIGHT = r"(?![A-Za-z0-9])"
# The prefilter. Python's regex engine has no multi-pattern automaton: an alternation of a
# hundred rules is tried branch by branch at every position, which made the table cost
# ~2.6 µs per byte of text. Every rule's secret is at least MIN_LENGTH characters from
# GATE_CHARS (tests/test_secret_rules.py checks each rule), so one lookahead, a tight loop
# in C, rules out nearly every position (words, numbers, CSS, code) before any branch is
# tried; the boundaries are checked once for all rules, not once per rule.
MIN_LENGTH = 15
GATE_CHARS = r"[A-Za-z0-9_\-.~+/=:%|]"
_GATE = rf"(?=[A-Za-z0-9_]{GATE_CHARS}{{{MIN_LENGTH - 1}}})"

RULES_BY_ID: dict[str, FormatRule] = {r.id: r for r in FORMAT_RULES}
_GROUP_OF: dict[str, FormatRule] = {f"f{i}": r for i, r in enumerate(FORMAT_RULES)}
_KEEP: dict[str, re.Pattern[str]] = {r.id: re.compile(r.keep) for r in FORMAT_RULES if r.keep}


_FIRST_ATOM = re.compile(r"(?:[A-Za-z0-9_]|\\d|\[[^\]\\]+\])(?![{*+?])")


def _has_top_level_or(pattern: str) -> bool:
    depth, i, in_class = 0, 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "|" and depth == 0:
            return True
        i += 1
    return False


def _branch(group: str, pattern: str) -> str:
    # The engine skips a branch in one step when its first item is a literal or a one-
    # character class, but a branch that opens with a group is entered at every position:
    # the first character goes before the group (the group names the rule; the match as
    # a whole is the secret)
    m = _FIRST_ATOM.match(pattern)
    if m is None or _has_top_level_or(pattern):
        return f"(?P<{group}>{pattern})"
    return f"{m.group(0)}(?P<{group}>{pattern[m.end() :]})"


def formats_alternation(rules: tuple[FormatRule, ...] = FORMAT_RULES) -> str:
    """One alternation of every rule, each in a group ``f<index>`` (see ``rule_of_group``),
    behind the shared boundaries and the length gate."""
    index = {r.id: i for i, r in enumerate(FORMAT_RULES)}
    branches = "|".join(_branch(f"f{index[r.id]}", r.pattern) for r in rules)
    return f"{_LEFT}{_GATE}(?:{branches}){_RIGHT}"


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
# one part of a dotted name: words, acronyms and numbers run together (writeUInt16LE,
# X509Certificate, PROTOCOL_SSLv23's parts); possessive, so a long run of capitals
# cannot make the engine try every way to cut it
_NAME_PART = re.compile(r"(?:[A-Z]{2,}+|[A-Z]?+[a-z]{2,}+|[0-9]++)++")
_NAME_SEPARATORS = re.compile(r"[._/\-]+")
_DIGIT_RUNS = re.compile(r"[0-9]+")
# a name's part when it has no digit: a lower-case start (is, get, x), then words,
# acronyms and two-letter ones (To, Id, By): random letters seldom read so
_WORDS = re.compile(r"[a-z]*+(?:[A-Z]{2,}+|[A-Z]?+[a-z]{2,}+|[A-Z][a-z])*+")
_WORD_SEPARATORS = re.compile(r"[._/\-+=~]+")


def is_uuid(value: str) -> bool:
    """A UUID, dashed as written (``8-4-4-4-12``)."""
    return _UUID.fullmatch(value) is not None


def looks_random(value: str) -> bool:
    """Whether a whole value is an opaque high-entropy token (an API key, a session id):
    20+ token characters with upper and lower case mixed (and digits; or, without one,
    32+ characters with no separator that do not read as words), not mostly runs of four
    or more lower-case letters (words, paths, identifiers), not a dotted name, high
    entropy. Pure
    hexadecimal (hashes, ETags, trace ids) and UUIDs are not: they are ids far more often
    than secrets, and secrets in those shapes are found by their names."""
    if not _TOKEN.fullmatch(value) or _HEX.fullmatch(value) or _UUID.fullmatch(value):
        return False
    if not (any(c.isupper() for c in value) and any(c.islower() for c in value)):
        return False
    if not any(c.isdigit() for c in value) and (
        len(value) < 32 or _WORD_SEPARATORS.search(value) or _words(value)
    ):
        return False
    wordy = _WORDY.findall(value)
    # three words or more that make up much of the value: an identifier, not a key (a
    # random 40-character key holds two or three 4-letter lower-case runs by chance)
    if len(wordy) > 2 and sum(map(len, wordy)) >= 0.4 * len(value):
        return False
    if value.startswith(("/", "http")) or _HASHLIKE.match(value):
        return False
    if "." in value and _dotted_name(value):
        return False
    if shannon_entropy(value) < (3.5 if len(value) < 32 else 4.0):
        return False
    return not _encodes_data(value)


def random_enough(value: str) -> bool:
    """Whether a whole value under a session's name is its random id: 20+ token
    characters, letters and digits or both cases mixed, not words. ``looks_random`` asks
    more, to tell keys from identifiers anywhere, and refused one express-session id in
    about 150 (``YFYrKDEiyXXlOLNhjH-P-rQyaBJnBtrm``: its entropy by chance below the bar),
    whose session then missed on replay."""
    if not _TOKEN.fullmatch(value) or is_uuid(value):
        return False
    kinds = (str.isupper, str.islower, str.isdigit)
    classes = sum(any(kind(c) for c in value) for kind in kinds)
    entropy = shannon_entropy(value)
    # letters only can read as words run together by chance; random ones carry more
    # entropy than any identifier (4.25 and up against 4.0 at most, measured)
    return classes >= 2 and entropy >= 3.0 and (entropy >= 4.2 or not _words(value))


# what serialized data starts with: pickle (protocols 2 to 5), zlib, gzip
_DATA_MAGIC = tuple(
    bytes.fromhex(h) for h in ("8002", "8003", "8004", "8005", "789c", "7801", "78da", "1f8b")
)


def _encodes_data(value: str) -> bool:
    """Base64 of serialized data, not random bytes: a Django session pickled (``gAWV…``), a
    compressed payload, a JSON or XML document. A cache holds such values; taken for
    tokens, they were replaced, and the app read a placeholder back. Base64 of other text
    stays a token: it may be a credential (``user:password``, a token encoded again)."""
    body = value.rstrip("=")
    if len(body) % 4 == 1 or not body.isascii():
        return False
    try:
        raw = base64.b64decode(body.replace("-", "+").replace("_", "/") + "=" * (-len(body) % 4))
    except ValueError:
        return False
    if raw.startswith(_DATA_MAGIC):
        return True
    if raw.lstrip()[:1] not in (b"{", b"[", b"<"):
        return False
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in raw)
    return printable >= 0.9 * len(raw)


def _words(value: str) -> bool:
    """Whether a value with no digit reads as words run together
    (``getOwnPropertyDescriptorsForObjectKeys``, ``isReservedId``). Asked only of one of
    32 characters or more with no separator: a letters-only key reads so seldom, while
    shorter and separated names do not always (``X-Content-Type-Options``,
    ``ReadDirectoryChangesW``, ``E-combining-dot-below``: an adversarial scan of
    installed docs and sources found 1 to 2% of those taken for tokens)."""
    return _WORDS.fullmatch(value) is not None


def _dotted_name(value: str) -> bool:
    """A dotted name (``crypto.X509Certificate``, ``Buffer.writeUInt16LE``,
    ``CLIENT_INFO_1.transformReply``, ``python-mappings/KOI8-U.TXT``): every part words,
    acronyms and numbers. Token generators write no dots, and a token that has one
    (``ya29.…``) has random parts, which are none of these."""
    parts = [p for p in _NAME_SEPARATORS.split(value) if p]
    return (
        len(parts) >= 2
        and any(len(p) >= 4 for p in parts)
        and all(len(p) < 4 or _name_part(p) for p in parts)
    )


def _name_part(part: str) -> bool:
    """Words, acronyms and numbers run together, as names have them (``UInt16LE``,
    ``X509``, ``SSLv23``): numbers in two places at most, and a long part with digits
    has a word in lower case; random capitals and digits (``QRBJK8BU3MG2RIPZ``) have
    neither."""
    return (
        _NAME_PART.fullmatch(part) is not None
        and len(_DIGIT_RUNS.findall(part)) <= 2
        and (len(part) < 12 or not part.isupper() or part.isalpha())
    )
