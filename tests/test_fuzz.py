"""Issue 13, item 7: property-based fuzzing of parsing and validation with mutated real documents.

Documents come from :mod:`fitbit_pipeline.sample_data` (one day of each activity) and are mutated in types,
ranges, nesting, keys, encodings and length. Whatever the mutation: no exception escapes parsing or
validation, a document is either parsed (rows accounted for, every rule id declared, every staged value fits
its column) or rejected with a declared rule id, and after a real run every file is in the ledger with
rows read = loaded + rejected + duplicate + superseded. Bounded and derandomized for CI.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import pathlib
import tempfile
from typing import Any

import orjson
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fitbit_pipeline import activities, schema
from fitbit_pipeline.parse import FileContext, FileRejected, parse_document
from fitbit_pipeline.rules import RULES
from fitbit_pipeline.sample_data import generate

from .hardening_support import Site

DAY = dt.date(2024, 3, 4)
RUN_DATE = dt.date(2024, 12, 31)
NAMES = [a.name for a in activities.ACTIVITIES]
CI = settings(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow], database=None)


@functools.cache
def real_documents() -> dict[str, bytes]:
    """One real day of each activity, as the sample generator writes them (compact, like the API)."""
    out = pathlib.Path(tempfile.mkdtemp(prefix="fitbit-fuzz-"))
    generate(out, participants=1, days=1, start=DAY, participant_ids=["P1"], seed=5)
    return {a: (out / "P1" / DAY.isoformat() / f"{a}.json").read_bytes() for a in NAMES}


# ---- mutations ---------------------------------------------------------------------------------------------

NUMBER_TEXTS = ["3_0", " 30", "+30", "nan", "Infinity", "1e999", "-0", "0x1e", "٣٠", "30.", ".5", "1e3"]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([2**31, 2**31 - 1, -(2**31) - 1, 2**63, 2**63 - 1, 2**64, -(2**63) - 1]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([72.4, 0.5, -1.5, 1e300, 5e-324]),
    st.text(max_size=12),
    st.sampled_from(NUMBER_TEXTS + ["00:00:00", "24:00:00", "2024-03-04", "2024-02-30", "minute", "second"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def _paths(node: Any, path: tuple[Any, ...] = (), rows: int = 3) -> list[tuple[Any, ...]]:
    """Every place of the document (a key or an index, down to the leaves), with only the first ``rows``
    and the last elements of long lists (the dataset), so that summaries and zones are hit as often."""
    out = [path]
    if isinstance(node, dict):
        keys: list[Any] = list(node)
    elif isinstance(node, list):
        keys = list(range(len(node))) if len(node) <= rows + 1 else [*range(rows), len(node) - 1]
    else:
        keys = []
    for k in keys:
        out += _paths(node[k], (*path, k), rows)
    return out


@st.composite
def structural(draw: st.DrawFn, doc: Any) -> Any:
    """Pick a place of the document and change it: a new value, a deleted or renamed key, more nesting."""
    path = draw(st.sampled_from(_paths(doc)))
    if not path:
        return draw(json_values)
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    key = path[-1]
    action = draw(st.sampled_from(["replace", "replace", "replace", "delete", "rename", "nest_list", "nest_dict"]))
    if action == "replace":
        parent[key] = draw(json_values)
    elif action == "delete":
        del parent[key]
    elif action == "rename" and isinstance(parent, dict):
        parent[draw(st.text(max_size=8))] = parent.pop(key)
    elif action == "nest_list":
        parent[key] = [parent[key]]
    elif action == "nest_dict":
        parent[key] = {"value": parent[key]}
    return doc


def _dumps(doc: Any, pretty: bool) -> bytes:
    return json.dumps(doc, indent=1 if pretty else None, separators=None if pretty else (",", ":")).encode()


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    """(activity, bytes): a real document with one or two mutations."""
    activity = draw(st.sampled_from(NAMES))
    raw = real_documents()[activity]
    for _ in range(draw(st.integers(1, 2))):
        kind = draw(st.sampled_from(["structure", "structure", "duplicate_key", "truncate", "bytes", "encoding"]))
        if kind == "structure":
            try:
                doc = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            raw = _dumps(draw(structural(doc)), draw(st.booleans()))
        elif kind == "duplicate_key":
            at = [i for i in range(len(raw)) if raw.startswith(b'"value":', i)]
            if at:
                i = at[draw(st.integers(0, len(at) - 1))]
                raw = raw[:i] + b'"value":' + _dumps(draw(scalars), False) + b"," + raw[i:]
        elif kind == "truncate":
            raw = raw[: draw(st.integers(0, max(0, len(raw) - 1)))]
        elif kind == "bytes":
            i = draw(st.integers(0, max(0, len(raw) - 1)))
            raw = raw[:i] + draw(st.binary(min_size=0, max_size=4)) + raw[i + draw(st.integers(0, 3)) :]
        else:
            encoding = draw(st.sampled_from(["utf-16", "utf-32", "bom", "latin-1"]))
            text = raw.decode("utf-8", "replace")
            if encoding == "bom":
                raw = b"\xef\xbb\xbf" + raw
            elif encoding == "latin-1":
                raw = (text.replace('"P1"', '"Pé"') + " ").encode("latin-1", "replace")
            else:
                raw = text.encode(encoding)
    return activity, raw


# ---- properties --------------------------------------------------------------------------------------------


def _repeats_a_key(raw: bytes) -> bool:
    def check(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({k for k, _ in pairs}) != len(pairs):
            raise KeyError("repeated")
        return dict(pairs)

    try:
        json.loads(raw, object_pairs_hook=check)
    except KeyError:
        return True
    except ValueError:
        pass
    return False


def _fits(rows: list[dict[str, Any]], table: schema.Table) -> None:
    """The staged rows of a document fit the table's columns (what the transform writes)."""
    base = {"participant_id": "P1", "date": DAY, "source_file": "f", "run_id": "r"}
    pa.Table.from_pylist([{**base, **r} for r in rows], schema=table.schema)


@settings(CI, max_examples=300)
@given(mutated())
def test_parsing_never_raises_and_accounts_for_every_row(case: tuple[str, bytes]) -> None:
    activity, raw = case
    ctx = FileContext("f.json", "P1", activities.get(activity), DAY, RUN_DATE)
    try:
        p = parse_document(raw, ctx)
    except FileRejected as rej:
        assert rej.rule_id in RULES and RULES[rej.rule_id].scope == "file"
        return
    assert p.rows_read == p.rows_valid + p.rows_rejected + p.rows_duplicate
    assert not _repeats_a_key(raw), "a document whose objects repeat a key was accepted"
    if p.daily is not None and "value" in p.daily:
        delivered = json.loads(raw)[f"activities-{activity}"][0]["value"]
        number = json.loads(delivered) if isinstance(delivered, str) else delivered  # JSON grammar only
        assert isinstance(number, int | float) and p.daily["value"] == number
    assert {r["rule_id"] for r in p.rejects} <= set(RULES)
    assert {f[0] for f in p.findings} <= {r for r in RULES if RULES[r].severity == "warning"}
    assert all(len(v) == len(p.ts) for v in p.measures.values())
    a = activities.get(activity)
    if p.daily is not None:
        _fits([p.daily], schema.DAILY[activity])
    if p.zones:
        _fits(p.zones, schema.HEART_RATE_ZONES)
    if len(p.ts):
        columns = {
            m.name: pa.array(p.measures[m.name], schema.INTRADAY[activity].schema.field(m.name).type)
            for m in a.measures
        }
        assert all(c.null_count == 0 for c in columns.values())


@settings(CI, max_examples=12)
@given(st.lists(mutated(), min_size=1, max_size=6))
def test_every_mutated_document_ends_loaded_or_rejected_in_a_real_run(cases: list[tuple[str, bytes]]) -> None:
    with tempfile.TemporaryDirectory(prefix="fitbit-fuzz-run-") as tmp:
        site = Site(pathlib.Path(tmp))
        for i, (activity, raw) in enumerate(cases):
            path = site.source / f"P{i}" / DAY.isoformat() / f"{activity}.json"
            path.parent.mkdir(parents=True)
            path.write_bytes(raw)
        s = site.run()
        assert s.status == "succeeded", s.message
        rows = site.sql("SELECT status, rule_id FROM rural.pipeline_files")
        assert len(rows) == len(cases)
        for status, rule_id in rows:
            assert status in ("loaded", "superseded") or (status == "rejected" and rule_id in RULES)
        site.identity_holds()
