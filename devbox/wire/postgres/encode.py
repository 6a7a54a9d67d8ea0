"""Recorded results -> backend message bytes, in the formats the client asked for (the
mock's row encoding, apart from its protocol state machine)."""

from __future__ import annotations

from typing import Any

from devbox.wire.postgres import messages as m
from devbox.wire.postgres import types


def columns(obj: dict[str, Any]) -> list[dict[str, Any]] | None:
    results = obj.get("results") or []
    if results and results[0].get("columns") is not None:
        cols: list[dict[str, Any]] = results[0]["columns"]
        return cols
    return None


def result_columns(
    res: dict[str, Any], formats: tuple[int, ...] | None
) -> list[dict[str, Any]] | None:
    """A result's recorded columns. Rows of an extended query whose client never asked
    for a description were recorded with none (no RowDescription came): their values are
    what the server sent, text as text and binary as ``\\x`` hex, in the ``formats``
    stored beside them, so they go out untyped in those formats (``value`` refuses
    another: without the type there is nothing to convert by)."""
    cols: list[dict[str, Any]] | None = res.get("columns")
    rows = res.get("rows")
    if cols is not None or formats is None or not rows:
        return cols
    recorded = res.get("formats")  # recordings made before it was stored: as asked
    if not isinstance(recorded, list) or len(recorded) != len(rows[0]):
        recorded = [
            "binary" if m.result_format(formats, i) else "text" for i in range(len(rows[0]))
        ]
    return [{"oid": 0, "format": f} for f in recorded]


def format_count_error(obj: dict[str, Any] | None, formats: tuple[int, ...]) -> bytes | None:
    """The server's 08P01 for a Bind asking for several result ``formats``, not one per
    column of the answer its Execute would get; None when they fit or the columns are
    unknown (a result without a description cannot be checked)."""
    cols = None if obj is None else columns(obj)
    n = len(formats)
    if cols is None or n == len(cols):
        return None
    why = f"bind message has {n} result formats but query has {len(cols)} columns"
    return m.error("08P01", why)


def copy_start(res: dict[str, Any]) -> list[bytes]:
    """A recorded COPY's CopyInResponse, or its CopyOutResponse, data and CopyDone; no
    CopyDone when an error cut the data short (``"interrupted"``): the error follows."""
    col_fmts = tuple(res.get("column_formats") or ())
    overall = int(res.get("format", 0))
    if res["copy"] != "out":
        return [m.copy_response(b"G", overall, col_fmts)]
    out = [m.copy_response(b"H", overall, col_fmts)]
    out.extend(m.msg(b"d", copy_bytes(d)) for d in res.get("data") or [])
    if not res.get("interrupted"):
        out.append(m.COPY_DONE)
    return out


def plain(obj: dict[str, Any]) -> bool:
    """One result of rows and a tag, nothing around it: encoded once and cached whole."""
    results: list[dict[str, Any]] = obj.get("results") or []
    if len(results) != 1 or obj.get("notices") or obj.get("parameter_status"):
        return False
    res = results[0]
    return "tag" in res and not res.keys() & {"error", "copy", "suspended", "empty"}


def recorded_format(c: dict[str, Any]) -> int:
    return 1 if c.get("format") == "binary" else 0


def description(cols: list[dict[str, Any]], formats: tuple[int, ...] | None) -> bytes:
    """RowDescription: the recorded columns, in the formats the client asked for (the
    recorded ones for a simple query)."""
    return m.row_description(
        [
            m.Column(
                c.get("name", "?column?"),
                int(c.get("table_oid", 0)),
                int(c.get("attnum", 0)),
                int(c.get("oid", 25)),
                int(c.get("typlen", -1)),
                int(c.get("typmod", -1)),
                recorded_format(c) if formats is None else m.result_format(formats, i),
            )
            for i, c in enumerate(cols)
        ]
    )


def rows(
    res: dict[str, Any], cols: list[dict[str, Any]], formats: tuple[int, ...] | None
) -> list[bytes]:
    spec = []
    for i, c in enumerate(cols):
        rec = recorded_format(c)
        want = rec if formats is None else m.result_format(formats, i)
        spec.append((int(c.get("oid", 25)), rec, want))
    return [
        m.data_row([value(v, *spec[i]) for i, v in enumerate(row)]) for row in res.get("rows") or []
    ]


def value(v: Any, oid: int, recorded: int, wanted: int) -> bytes | None:
    if recorded == wanted:
        return types.encode(v, oid, wanted)
    # recorded by a client that asked for the other format: convert where the type is known
    if oid == 0 and v is not None:  # untyped (never described): nothing to convert by
        raise ValueError(
            f"a value recorded in {'binary' if recorded else 'text'} by a client that never "
            f"asked for a description, asked for in {'binary' if wanted else 'text'}: "
            "its type is unknown (record with this client's result formats)"
        )
    if wanted == 0:
        return None if v is None else types.text_bytes(v, oid)
    if v is None or oid not in types.NAMES:
        raise ValueError(f"{types.type_name(oid)} recorded as text, asked for binary")
    return types.encode(types.from_text(v, oid), oid, 1)


def copy_bytes(d: Any) -> bytes:
    if isinstance(d, dict):
        return bytes.fromhex(str(d.get("hex", "")))
    return str(d).encode("utf-8")
