"""Hypothesis strategies for hostile HAR documents, shared by the suite's bounded run and
the long run (``python -m bench.fidelity.fuzz_har``)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from devbox.core.har import exchanges_to_har, import_har
from devbox.errors import RecordingError

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
_json = st.recursive(
    _scalars,
    lambda kids: st.one_of(
        st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=12,
)
_urls = st.one_of(
    st.sampled_from(
        [
            "http://[::1",
            "http://[zz]/x",
            "http://h:99999/",
            "http://h:port/",
            "//h/x",
            "",
            "http://h/a b?q=%zz&x=:y",
            "https://[::1]:8080/p?a=1&a=2",
            "/rel?x",
            "mailto:x",
            "http://h/\udc80",
            "http://user:pw@h/x#frag",
            "http://h/%00",
        ]
    ),
    st.text(max_size=30),
    st.text(max_size=20).map(lambda t: "http://" + t),
)
_headers = st.one_of(
    _json,
    st.lists(
        st.one_of(
            st.fixed_dictionaries({"name": st.text(max_size=10), "value": _scalars}),
            _json,
        ),
        max_size=4,
    ),
)
_content = st.one_of(
    _json,
    st.fixed_dictionaries(
        {},
        optional={
            "text": st.one_of(st.text(max_size=40), _scalars),
            "encoding": st.sampled_from(["base64", "BASE64", "", "x"]),
            "size": _scalars,
            "mimeType": st.sampled_from(
                [
                    "text/html",
                    "text/html; charset=iso-8859-1",
                    "text/plain; charset=nope",
                    "application/octet-stream",
                    "",
                ]
            ),
            "compression": _scalars,
        },
    ),
)
_response = st.one_of(
    _json,
    st.fixed_dictionaries(
        {},
        optional={
            "status": st.one_of(st.sampled_from([-1, 0, 99, 200, 204, 304, 1000]), _scalars),
            "headers": _headers,
            "content": _content,
            "statusText": _scalars,
            "_failureText": _scalars,
            "_error": _scalars,
            "httpVersion": _scalars,
        },
    ),
)
_request = st.one_of(
    _json,
    st.fixed_dictionaries(
        {},
        optional={
            "method": st.one_of(st.sampled_from(["GET", "post", "", "G T"]), _scalars),
            "url": _urls,
            "headers": _headers,
            "cookies": _json,
            "postData": st.one_of(_json, _content),
            "bodySize": _scalars,
            "httpVersion": _scalars,
        },
    ),
)
_entry = st.one_of(
    _json,
    st.fixed_dictionaries(
        {"request": _request},
        optional={
            "response": _response,
            "startedDateTime": st.one_of(
                st.sampled_from(["2024-01-01T00:00:00Z", "yesterday", "9999-99-99", ""]),
                _scalars,
            ),
            "time": _scalars,
            "timings": _json,
            "_devbox": _json,
        },
    ),
)
har_documents: st.SearchStrategy[Any] = st.one_of(
    _json,
    st.fixed_dictionaries(
        {
            "log": st.one_of(
                _json,
                st.fixed_dictionaries(
                    {"entries": st.one_of(st.lists(_entry, max_size=5), _json)},
                    optional={"creator": _json},
                ),
            )
        }
    ),
)


def check_document(doc: Any, strict: bool) -> None:
    """The loader's promise: a value or one RecordingError; what it gives exports again."""
    try:
        result = import_har(doc, source="s", filename="f.har", strict=strict)
    except RecordingError as exc:
        assert exc.one_line() and "\n" not in exc.one_line()
        return
    for w in result.warnings:
        assert w.one_line("f.har").startswith("f.har: log.entries[")
    exchanges_to_har(result.exchanges)
