"""Which charset a text body was in on the wire, by the order a browser decides it.

HAR producers hand over bodies as *decoded text*; to get the bytes back devbox must
re-encode that text in the charset the response declared, or a latin-1 page comes back
as UTF-8 under a latin-1 header (the browser then shows ``Â©``). The order is the one
the HTML standard's encoding sniffing uses: the Content-Type header, then a byte order
mark, then (HTML only) a ``<meta charset>`` in the first 1024 bytes, then what the
producer wrote as the entry's mimeType. Nothing declared: UTF-8.
"""

from __future__ import annotations

import codecs
import re

_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# <meta charset="x"> and <meta http-equiv="Content-Type" content="text/html; charset=x">
_META = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([A-Za-z0-9_\-:.]+)""", re.IGNORECASE)
_SNIFF = 1024  # bytes of an HTML document searched for <meta charset>


def lookup(name: str) -> str | None:
    """The codec's canonical name, or None for a name Python does not know."""
    try:
        return codecs.lookup(name.strip().strip("\"'").lower()).name
    except (LookupError, ValueError):
        return None


def mime_charset(content_type: str | None) -> str | None:
    """The ``charset`` parameter of a Content-Type value, if it names a known codec."""
    if not content_type:
        return None
    for param in content_type.split(";")[1:]:
        k, _, v = param.partition("=")
        if k.strip().lower() == "charset":
            return lookup(v)
    return None


def is_html(content_type: str | None) -> bool:
    return bool(content_type) and "html" in (content_type or "").split(";")[0].lower()


def bom_charset(body: bytes) -> str | None:
    for bom, name in _BOMS:
        if body.startswith(bom):
            return name
    return None


def meta_charset(head: bytes) -> str | None:
    m = _META.search(head[:_SNIFF])
    if m is None:
        return None
    name = lookup(m.group(1).decode("ascii", "replace"))
    # a page saying utf-16 in an ASCII-compatible <meta> is in fact UTF-8 (HTML standard)
    return "utf-8" if name is not None and name.startswith("utf-16") else name


def body_charset(content_type: str | None, body: bytes) -> str | None:
    """The charset of *body* (bytes as on the wire), or None when nothing declares one."""
    return (
        mime_charset(content_type)
        or bom_charset(body)
        or (meta_charset(body) if is_html(content_type) else None)
    )


def text_charset(
    content_type: str | None, text: str, producer_mime: str | None, fallback: str = "utf-8"
) -> str:
    """The charset to re-encode *text* (a producer's decoded body) into; *fallback* is what
    the producer decodes undeclared bodies with (mitmproxy: latin-1 unless JSON)."""
    declared = mime_charset(content_type)
    if declared:
        return declared
    if text.startswith("\ufeff"):
        return "utf-8"
    kind = content_type or producer_mime
    if is_html(kind):
        head = text[:_SNIFF].encode("ascii", "replace")
        found = meta_charset(head)
        if found:
            return found
    return mime_charset(producer_mime) or fallback


def encode_text(text: str, charset: str) -> bytes:
    """*text* in *charset*; what the charset cannot hold falls back to UTF-8 as a whole."""
    try:
        return text.encode(charset)
    except (UnicodeEncodeError, LookupError):
        pass
    try:
        # lone surrogates \\udc80-\\udcff: a tool wrote undecodable bytes this way
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


def decode_text(body: bytes, content_type: str | None) -> str | None:
    """*body* as text in its declared charset (UTF-8 if none), or None if it is not text."""
    charset = body_charset(content_type, body) or "utf-8"
    try:
        return body.decode(charset)
    except (UnicodeDecodeError, LookupError):
        return None


__all__ = [
    "body_charset",
    "bom_charset",
    "decode_text",
    "encode_text",
    "is_html",
    "lookup",
    "meta_charset",
    "mime_charset",
    "text_charset",
]


# C0 controls that no text carries (tab, LF, FF, CR and ESC excepted), and DEL
_CONTROLS = bytes([*range(0x00, 0x09), 0x0B, *range(0x0E, 0x1B), *range(0x1C, 0x20), 0x7F])
_BINARY_SAMPLE = 4096


def looks_binary(body: bytes) -> bool:
    """Bytes that are not text in any 8-bit charset, whatever their Content-Type says: a
    NUL, or more than one in twenty of the first 4 KiB control characters (random bytes
    hold about one in nine)."""
    if b"\x00" in body:
        return True
    sample = body[:_BINARY_SAMPLE]
    controls = len(sample) - len(sample.translate(None, _CONTROLS))
    return controls * 20 > len(sample)
