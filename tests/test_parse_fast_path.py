"""The byte scanner of compact datasets gives exactly what the general (orjson) path gives.

``parse_document`` reads a compact intraday dataset straight from the bytes and leaves every other
shape to the general path. Both must agree on everything: typed columns (bit for bit), rejects with
their raw rows, findings, counts and whole-file rejections. Checked on the reference fixtures, on
generated data and on thousands of mutated documents.
"""

from __future__ import annotations

import datetime as dt
import json
import random

import numpy as np
import pytest

from fitbit_pipeline import activities, parse
from fitbit_pipeline.parse import FileContext, FileRejected, parse_document
from fitbit_pipeline.sample_data import generate

from .conftest import FIXTURES

RUN_DATE = dt.date(2024, 12, 31)


def _outcome(raw: bytes, ctx: FileContext, fast: bool, monkeypatch: pytest.MonkeyPatch):
    with monkeypatch.context() as m:
        if not fast:
            m.setattr(parse, "_fast_document", lambda raw, a: None)
        try:
            p = parse_document(raw, ctx)
        except FileRejected as exc:
            return ("rejected", exc.rule_id, exc.detail, exc.rows_read)
    measures = {k: (v.dtype.str, v.tobytes()) for k, v in p.measures.items()}
    return (
        p.date,
        p.dataset_type,
        p.dataset_interval,
        p.ts.dtype.str,
        p.ts.tobytes(),
        measures,
        p.daily,
        p.zones,
        p.rejects,
        p.findings,
        p.rows_read,
        p.rows_rejected,
        p.rows_duplicate,
    )


def _same(raw: bytes, activity: str, monkeypatch: pytest.MonkeyPatch, date: dt.date | None = None) -> None:
    ctx = FileContext("f.json", "P1", activities.BY_NAME[activity], date, RUN_DATE)
    assert _outcome(raw, ctx, True, monkeypatch) == _outcome(raw, ctx, False, monkeypatch), raw[:300]


def _uses_scanner(raw: bytes, activity: str) -> bool:
    return parse._fast_document(raw, activities.BY_NAME[activity]) is not None


def test_reference_fixtures_agree(monkeypatch) -> None:
    files = sorted((FIXTURES / "web-api").glob("*.json"))
    assert len(files) == 11, f"reference fixtures missing from {FIXTURES}"
    for path in files:
        activity = path.name.split("_")[0]
        _same(path.read_bytes(), activity, monkeypatch)
    # The compact responses take the scanner (the pretty-printed variant does not).
    assert _uses_scanner((FIXTURES / "web-api" / "heart_1sec.json").read_bytes(), "heart")
    assert _uses_scanner((FIXTURES / "web-api" / "calories_1min.json").read_bytes(), "calories")
    assert not _uses_scanner((FIXTURES / "web-api" / "heart_time_window_variant.json").read_bytes(), "heart")


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("gen")
    generate(out, participants=1, days=2, hr_seconds=True, seed=21)
    return {p.stem + str(i): p.read_bytes() for i, p in enumerate(sorted(out.rglob("*.json")))}


def test_generated_documents_agree_and_take_the_scanner(generated, monkeypatch) -> None:
    for name, raw in generated.items():
        activity = name.rstrip("0123456789")
        assert _uses_scanner(raw, activity)
        _same(raw, activity, monkeypatch)


def _doc(activity: str, rows: list[str], summary: str | None = None, tail: str = "") -> bytes:
    summary = summary if summary is not None else f'[{{"dateTime":"2024-03-09","value":"{len(rows)}"}}]'
    return (
        f'{{"activities-{activity}":{summary},"activities-{activity}-intraday":{{"dataset":[{",".join(rows)}],'
        f'"datasetInterval":1,"datasetType":"minute"}}{tail}}}'
    ).encode()


VALUES = [
    "0", "-0", "-0.0", "0.0", "7", "72", "72.0", "72.5", "-3", "01", "1e3", "1E3", "1.", ".5", "-", "--1", "+1",
    "null", "true", '"72"', "1.2670937776565552", "0.1000000000000000055511151231257827", "123456789012345678",
    "99999999999999999999999", "9007199254740993", "9007199254740993.5", " 72", "72 ", "4.83986", "NaN", "[1]",
    "{}", "0.30000000000000004", "1234567890.123456789", "5e-324", "300", "301", "250",
]  # fmt: skip
TIMES = [
    '"00:00:00"', '"23:59:00"', '"24:00:00"', '"00:60:00"', '"00:00:60"', '"0:00:00"', '"00:00:0a"', '"00-00-00"',
    '"00:00:00 "', '"ab"', "123", "null", '"00:00:30"', '"00:01:00"', '"\\u0030\\u0030:00:00"', '"00:0\\u0000:00"',
    '"00:02:00"', '"12:34:00"', '"é0:00:00"',
]  # fmt: skip


def _row(activity: str, time: str, values: dict[str, str]) -> str:
    if activity == "calories":
        return f'{{"level":{values["level"]},"mets":{values["mets"]},"time":{time},"value":{values["value"]}}}'
    return f'{{"time":{time},"value":{values["value"]}}}'


def _mutations(rng: random.Random, activity: str) -> bytes:
    n = rng.randint(0, 6)
    rows = []
    for i in range(n):
        values = {"value": str(rng.randint(0, 120)), "level": str(rng.randint(0, 3)), "mets": str(rng.randint(10, 90))}
        time = f'"{i // 60:02d}:{i % 60:02d}:00"'
        if rng.random() < 0.3:
            key = rng.choice(list(values))
            values[key] = rng.choice(VALUES)
        if rng.random() < 0.2:
            time = rng.choice(TIMES)
        rows.append(_row(activity, time, values))
    raw = _doc(activity, rows)
    kind = rng.random()
    text = raw.decode("utf-8")
    if kind < 0.08 and rows:  # whitespace somewhere
        at = rng.randrange(len(text))
        text = text[:at] + rng.choice([" ", "\n", "\t"]) + text[at:]
    elif kind < 0.14:  # truncated
        text = text[: rng.randrange(len(text))]
    elif kind < 0.2 and rows:  # keys reordered, missing, extra or duplicated in one row
        r = rng.randrange(n)
        try:
            obj = json.loads(rows[r])
        except ValueError:
            obj = {}
        choice = rng.randrange(4)
        items = list(obj.items()) if isinstance(obj, dict) else []
        if choice == 0:
            rng.shuffle(items)
            new = "{" + ",".join(f'"{k}":{json.dumps(v)}' for k, v in items) + "}"
        elif choice == 1 and items:
            items.pop(rng.randrange(len(items)))
            new = "{" + ",".join(f'"{k}":{json.dumps(v)}' for k, v in items) + "}"
        elif choice == 2:
            new = rows[r][:-1] + ',"extra":1}'
        else:
            new = rows[r][:-1] + ',"value":5}'
        rows[r] = new
        text = _doc(activity, rows).decode()
    elif kind < 0.25 and rows:  # duplicate rows
        rows.append(rows[rng.randrange(n)])
        text = _doc(activity, rows).decode()
    elif kind < 0.3:  # sentinel-like text and a decoy dataset elsewhere
        decoy = rng.choice(
            [
                ',"note":"x\\u0000y"',
                ',"decoy":{"dataset":[{"time":"00:00:00","value":1}]}',
                f',"activities-{activity}-intraday":{{"dataset":[]}}',
                ',"k\\"dataset":[{"time":"00:00:00","value":1}]',
            ]
        )
        text = _doc(activity, rows, tail=decoy).decode()
    elif kind < 0.36:  # structure damaged
        text = text.replace(rng.choice(["[", "]", "{", "}", ",", ":", '"']), rng.choice(["", "[", "]", "{", ","]), 1)
    elif kind < 0.4:  # a row that is not an object, or nested
        rows.insert(rng.randrange(n + 1), rng.choice(["1", "[]", "null", '{"time":"00:00:00","value":[1]}', "{}"]))
        text = _doc(activity, rows).decode()
    elif kind < 0.45:  # interval and type
        text = text.replace('"datasetInterval":1', rng.choice(['"datasetInterval":15', '"datasetInterval":0']))
        text = text.replace('"datasetType":"minute"', rng.choice(['"datasetType":"second"', '"datasetType":"hour"']))
    elif kind < 0.5 and text:  # one random byte changed
        at = rng.randrange(len(text))
        text = text[:at] + rng.choice('0123456789:{}[],".-e ') + text[at + 1 :]
    return text.encode("utf-8")


@pytest.mark.parametrize("activity", ["steps", "calories", "heart", "distance"])
def test_mutated_documents_agree(activity, monkeypatch) -> None:
    rng = random.Random(f"fast-path-{activity}")
    scanned = 0
    for _ in range(1000):
        raw = _mutations(rng, activity)
        scanned += _uses_scanner(raw, activity)
        _same(raw, activity, monkeypatch)
    assert scanned > 200  # the scanner was exercised, not only the general path


def test_long_decimals_and_large_datasets(monkeypatch) -> None:
    rng = np.random.default_rng(3)
    values = rng.random(5000)  # second-level: at most 1 m per second
    rows = [
        f'{{"time":"{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}","value":{float(v)!r}}}'
        for i, v in enumerate(values)
    ]
    raw = _doc("elevation", rows).replace(b'"minute"', b'"second"')
    assert _uses_scanner(raw, "elevation")
    _same(raw, "elevation", monkeypatch)
    p = parse_document(raw, FileContext("f", "P", activities.BY_NAME["elevation"], None, RUN_DATE))
    assert np.array_equal(p.measures["value"], values)
