"""Secrets recognised by a provider's name next to a value of that provider's shape.

Many providers issue keys with no prefix of their own: 32 letters and digits for Algolia,
Asana, Bitbucket, Codecov; 40 for Datadog or Zendesk; a UUID for Heroku or HubSpot. Such a
value is only a credential when the name it is stored under says whose it is
(``ALGOLIA_ADMIN_KEY``, ``"datadogAppKey"``, ``asana.client_id``), which is how gitleaks'
default rules find them. Each rule here is a set of keywords and the exact shape of the
value; both must hold, so ``algolia_index: "products"`` or ``heroku_region: "eu"`` stay.

A keyword counts at the start of a word of the name (``new_relic_key``, ``NewRelicKey``,
``NEWRELIC_KEY``): ``lob`` is Lob in ``lob_api_key`` but nothing in ``global_timeout``.
Values hold at least one digit (unless their shape fixes it otherwise), so a word of the
right length is not taken for a key.

Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True, slots=True)
class KeywordRule:
    id: str  # also the placeholder kind
    keywords: tuple[str, ...]  # lower case, words joined by "_"
    value: str  # the whole value's shape
    description: str = ""


_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_AN = "[A-Za-z0-9]"
_ANX = r"[A-Za-z0-9=_\-]"


def _r(id_: str, keywords: str, value: str, description: str) -> KeywordRule:
    return KeywordRule(id_, tuple(keywords.split()), value, description)


KEYWORD_RULES: tuple[KeywordRule, ...] = (
    _r("adafruit-api-key", "adafruit", r"[A-Za-z0-9_\-]{32}", "Adafruit IO key"),
    _r("adobe-client-id", "adobe", r"[a-f0-9]{32}", "Adobe client id"),
    _r("airtable-api-key", "airtable", f"{_AN}{{17}}", "Airtable legacy API key"),
    _r("algolia-api-key", "algolia", f"{_AN}{{32}}", "Algolia API key"),
    _r("alibaba-secret-key", "alibaba", f"{_AN}{{30}}", "Alibaba Cloud secret"),
    _r("asana-client-id", "asana", r"[0-9]{16}", "Asana client id"),
    _r("asana-client-secret", "asana", f"{_AN}{{32}}", "Asana client secret"),
    _r("atlassian-api-token", "atlassian confluence jira", f"{_AN}{{24}}", "Atlassian token"),
    _r("beamer-api-token", "beamer", r"b_[A-Za-z0-9=_\-]{44}", "Beamer API token"),
    _r("bitbucket-client-id", "bitbucket", f"{_AN}{{32}}", "Bitbucket client id"),
    _r("bitbucket-client-secret", "bitbucket", f"{_ANX}{{64}}", "Bitbucket client secret"),
    _r("bittrex-key", "bittrex", f"{_AN}{{32}}", "Bittrex access or secret key"),
    _r("cisco-meraki-api-key", "meraki", r"[0-9a-f]{40}", "Cisco Meraki API key"),
    _r("cloudflare-api-key", "cloudflare", r"[A-Za-z0-9_\-]{40}", "Cloudflare API token"),
    _r("cloudflare-global-api-key", "cloudflare", r"[a-f0-9]{37}", "Cloudflare global key"),
    _r("codecov-access-token", "codecov", f"{_AN}{{32}}", "Codecov token"),
    _r("cohere-api-token", "cohere co_api_key", f"{_AN}{{40}}", "Cohere API key"),
    _r("coinbase-access-token", "coinbase", r"[A-Za-z0-9_\-]{64}", "Coinbase token"),
    _r("confluent-access-token", "confluent", f"{_AN}{{16}}", "Confluent key"),
    _r("confluent-secret-key", "confluent", f"{_AN}{{64}}", "Confluent secret"),
    _r("contentful-delivery-token", "contentful", f"{_ANX}{{43}}", "Contentful delivery"),
    _r("datadog-access-token", "datadog", f"{_AN}{{40}}", "Datadog API or app key"),
    _r("discord-api-token", "discord", r"[a-f0-9]{64}", "Discord API token"),
    _r("discord-client-id", "discord", r"[0-9]{18}", "Discord client id"),
    _r("discord-client-secret", "discord", f"{_ANX}{{32}}", "Discord client secret"),
    _r("droneci-access-token", "droneci drone_ci", f"{_AN}{{32}}", "Drone CI token"),
    _r("dropbox-api-token", "dropbox", f"{_AN}{{15}}", "Dropbox API key"),
    _r(
        "dropbox-long-lived-token",
        "dropbox",
        r"[A-Za-z0-9]{11}AAAAAAAAAA[A-Za-z0-9\-_=]{43}",
        "Dropbox long-lived token",
    ),
    _r("dropbox-short-lived-token", "dropbox", r"sl\.[A-Za-z0-9\-=_]{135}", "Dropbox token"),
    _r("etsy-access-token", "etsy", f"{_AN}{{24}}", "Etsy API key"),
    _r("facebook-secret", "facebook", r"[a-f0-9]{32}", "Facebook app secret"),
    _r("fastly-api-token", "fastly", f"{_ANX}{{32}}", "Fastly API token"),
    _r("finicity-api-token", "finicity", r"[a-f0-9]{32}", "Finicity API token"),
    _r("finicity-client-secret", "finicity", f"{_AN}{{20}}", "Finicity client secret"),
    _r("finnhub-access-token", "finnhub", f"{_AN}{{20}}", "Finnhub token"),
    _r("flickr-access-token", "flickr", f"{_AN}{{32}}", "Flickr API key"),
    _r("freemius-secret-key", "freemius secret_key", r"sk_[^\s\"'`]{29}", "Freemius secret"),
    _r("freshbooks-access-token", "freshbooks", f"{_AN}{{64}}", "FreshBooks token"),
    _r("gitter-access-token", "gitter", r"[A-Za-z0-9_\-]{40}", "Gitter token"),
    _r("gocardless-api-token", "gocardless", r"live_[A-Za-z0-9\-_=]{40}", "GoCardless token"),
    _r("heroku-api-key-v1", "heroku", _UUID, "Heroku API key (v1, a UUID)"),
    _r("hubspot-api-key", "hubspot", _UUID, "HubSpot API key"),
    _r("intercom-api-key", "intercom", f"{_ANX}{{60}}", "Intercom access token"),
    _r("jfrog-api-key-named", "jfrog artifactory bintray xray", f"{_AN}{{73}}", "JFrog API key"),
    _r("jfrog-identity-token", "jfrog artifactory bintray xray", f"{_AN}{{64}}", "JFrog id"),
    _r("kraken-access-token", "kraken", r"[A-Za-z0-9/=_+\-]{80,90}", "Kraken API key"),
    _r("kucoin-access-token", "kucoin", r"[a-f0-9]{24}", "KuCoin API key"),
    _r("kucoin-secret-key", "kucoin", _UUID, "KuCoin secret"),
    _r("launchdarkly-access-token", "launchdarkly", f"{_ANX}{{40}}", "LaunchDarkly token"),
    _r("linear-client-secret", "linear", r"[a-f0-9]{32}", "Linear client secret"),
    _r("linkedin-client-id", "linkedin linked_in", f"{_AN}{{14}}", "LinkedIn client id"),
    _r("linkedin-client-secret", "linkedin linked_in", f"{_AN}{{16}}", "LinkedIn secret"),
    _r("lob-api-key", "lob", r"(?:live|test)_[a-f0-9]{35}", "Lob API key"),
    _r("lob-pub-api-key", "lob", r"(?:live|test)_pub_[a-f0-9]{31}", "Lob publishable key"),
    _r("looker-client-id", "looker", f"{_AN}{{20}}", "Looker client id"),
    _r("looker-client-secret", "looker", f"{_AN}{{24}}", "Looker client secret"),
    _r("mattermost-access-token", "mattermost", f"{_AN}{{26}}", "Mattermost token"),
    _r("messagebird-api-token", "messagebird message_bird", f"{_AN}{{25}}", "MessageBird key"),
    _r("messagebird-client-id", "messagebird message_bird", _UUID, "MessageBird client id"),
    _r("netlify-access-token", "netlify", f"{_ANX}{{40,46}}", "Netlify token"),
    _r("newrelic-user-api-id", "newrelic new_relic", f"{_AN}{{64}}", "New Relic user API id"),
    _r("nytimes-access-token", "nytimes new_york_times newyorktimes", f"{_ANX}{{32}}", "NYT"),
    _r("okta-access-token", "okta", r"00[A-Za-z0-9_=\-]{40}", "Okta API token"),
    _r("plaid-client-id", "plaid", f"{_AN}{{24}}", "Plaid client id"),
    _r("plaid-secret-key", "plaid", f"{_AN}{{30}}", "Plaid secret"),
    _r("privateai-api-token", "privateai private_ai", f"{_AN}{{32}}", "Private AI key"),
    _r("rapidapi-access-token", "rapidapi", r"[A-Za-z0-9_\-]{50}", "RapidAPI key"),
    _r("sendbird-access-id", "sendbird", _UUID, "Sendbird application id"),
    _r("sendbird-access-token", "sendbird", r"[a-f0-9]{40}", "Sendbird API token"),
    _r("sentry-access-token", "sentry", r"[a-f0-9]{64}", "Sentry access token"),
    _r(
        "sidekiq-secret",
        "bundle_enterprise_contribsys_com bundle_gems_contribsys_com",
        r"[a-f0-9]{8}:[a-f0-9]{8}",
        "Sidekiq Pro/Enterprise credentials",
    ),
    _r("snyk-api-token", "snyk", _UUID, "Snyk API token"),
    _r("sonar-api-token", "sonar", r"(?:squ_|sqp_|sqa_)?[A-Za-z0-9=_\-]{40}", "SonarQube token"),
    _r("squarespace-access-token", "squarespace", _UUID, "Squarespace API key"),
    _r("sumologic-access-id", "sumo sumologic", r"su[A-Za-z0-9]{12}", "Sumo Logic access id"),
    _r("sumologic-access-token", "sumo sumologic", f"{_AN}{{64}}", "Sumo Logic access key"),
    _r(
        "telegram-bot-token-named",
        "telegram telegr",
        r"[0-9]{5,16}:A[A-Za-z0-9_\-]{34}",
        "Telegram bot token",
    ),
    _r("travisci-access-token", "travis", f"{_AN}{{22}}", "Travis CI token"),
    _r("twitch-api-token", "twitch", f"{_AN}{{30}}", "Twitch API token"),
    _r("twitter-access-secret", "twitter", f"{_AN}{{45}}", "Twitter access secret"),
    _r("twitter-access-token", "twitter", r"[0-9]{15,25}-[A-Za-z0-9]{20,40}", "Twitter token"),
    _r("twitter-api-key", "twitter", f"{_AN}{{25}}", "Twitter API key"),
    _r("twitter-api-secret", "twitter", f"{_AN}{{50}}", "Twitter API secret"),
    _r("vault-legacy-token", "vault", r"s\.[A-Za-z0-9]{24}", "HashiCorp Vault legacy token"),
    _r(
        "yandex-access-token",
        "yandex",
        r"t1\.[A-Za-z0-9_\-]+={0,2}\.[A-Za-z0-9_\-]{86}={0,2}",
        "Yandex Cloud IAM token",
    ),
    _r("yandex-aws-access-token", "yandex", r"YC[A-Za-z0-9_\-]{38}", "Yandex static key"),
    _r("zendesk-secret-key", "zendesk", f"{_AN}{{40}}", "Zendesk API token"),
)

KEYWORD_MIN_VALUE = 14  # the shortest value shape (a LinkedIn client id, a Sumo Logic id)
RULES_BY_ID: dict[str, KeywordRule] = {r.id: r for r in KEYWORD_RULES}
_SHAPE: dict[str, re.Pattern[str]] = {r.id: re.compile(r.value) for r in KEYWORD_RULES}
_BY_KEYWORD: dict[str, tuple[KeywordRule, ...]] = {}
for _rule in KEYWORD_RULES:
    for _kw in _rule.keywords:
        _BY_KEYWORD[_kw] = (*_BY_KEYWORD.get(_kw, ()), _rule)
# longest first, so "sumologic" is found whole before "sumo"
_KEYWORDS = re.compile(
    r"(?:^|(?<=_))(" + "|".join(sorted(map(re.escape, _BY_KEYWORD), key=len, reverse=True)) + ")"
)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SEPARATORS = re.compile(r"[^A-Za-z0-9]+")
# the shape fixes no digit (a hexadecimal or alphanumeric run): a word is not a key
_NEEDS_DIGIT = re.compile(r"[A-Za-z0-9_=\-]+")
# every keyword shares a first letter with one of these: a name with none of them is
# ruled out without the expression
_FIRST_LETTERS = frozenset(k[0] for k in _BY_KEYWORD)


@lru_cache(maxsize=4096)
def rules_for_name(name: str) -> tuple[KeywordRule, ...]:
    """The rules whose keyword starts a word of ``name`` (``datadogAppKey``, ``DD_...``)."""
    if len(name) < 3 or not _FIRST_LETTERS.intersection(name.lower()):
        return ()
    norm = _SEPARATORS.sub("_", _CAMEL.sub("_", name)).lower().strip("_")
    found: list[KeywordRule] = []
    for m in _KEYWORDS.finditer(norm):
        for rule in _BY_KEYWORD[m.group(1)]:
            if rule not in found:
                found.append(rule)
    return tuple(found)


def keyword_rule(name: str, value: str) -> KeywordRule | None:
    """The rule ``value`` is a secret by, under ``name``, if any."""
    if len(value) < KEYWORD_MIN_VALUE or len(value) > 300:
        return None
    rules = rules_for_name(name)
    if not rules:
        return None
    for rule in rules:
        if _SHAPE[rule.id].fullmatch(value) is None:
            continue
        if _NEEDS_DIGIT.fullmatch(value) and not any(c.isdigit() for c in value):
            continue
        return rule
    return None


# In code and documents: a quoted value after "=", ":", "=>" or ",", whose name (just
# before it) is looked up in Python. The expression opens with a one-character class, so
# the engine skips every other position in C.
VALUE_AFTER_NAME = re.compile(r"[=:,>][ \t]*[\"'`](?P<value>[^\s\"'`<>,;\\]{14,300})(?=[\"'`])")
_NAME_BEFORE = re.compile(r"([A-Za-z_$][A-Za-z0-9_$.\-]{0,80})[\"']?[ \t]*(?::=|=>|[=:,])$")


def name_before(text: str, at: int) -> str:
    """The identifier just before the assignment at ``at`` in ``text`` ("" when none)."""
    m = _NAME_BEFORE.search(text, max(0, at - 90), at + 1)
    return m.group(1) if m else ""
