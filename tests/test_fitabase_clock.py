"""Fitabase times: the byte-level reader against Python's own strptime on random texts, valid and not."""

from __future__ import annotations

import datetime as dt
import random
import re

import pyarrow as pa
import pytest

from fitbit_pipeline.fitabase.clock import read_times

_STRICT = re.compile(r"\d{1,2}/\d{1,2}/\d{4} \d{1,2}:\d{2}:\d{2}( [AP]M)?")
_STRICT_DATE = re.compile(r"\d{1,2}/\d{1,2}/\d{4}")
_EPOCH = dt.datetime(1970, 1, 1)


def _reference(text: str, date_only: bool) -> int | None:
    """Microseconds by the documented grammar, with the calendar and clock of Python's datetime."""
    body = text.strip()
    if date_only:
        if not _STRICT_DATE.fullmatch(body):
            return None
        formats = ["%m/%d/%Y"]
    else:
        if not _STRICT.fullmatch(body.upper()):
            return None
        formats = ["%m/%d/%Y %I:%M:%S %p"] if body[-1] in "mM" else ["%m/%d/%Y %H:%M:%S"]
    try:
        when = dt.datetime.strptime(body.upper(), formats[0])
    except ValueError:
        return None
    return int((when - _EPOCH) / dt.timedelta(microseconds=1))


def _random_text(rng: random.Random, date_only: bool) -> str:
    def num(lo: int, hi: int, pad: bool = False) -> str:
        v = rng.randint(lo, hi)
        return f"{v:02d}" if pad or rng.random() < 0.1 else str(v)

    date = f"{num(0, 13)}/{num(0, 32)}/{rng.choice(['2016', '2020', '1900', '2000', '0000', '16', '20161'])}"
    if date_only:
        text = date
    else:
        hour = num(0, 24)
        text = f"{date} {hour}:{num(0, 60, True)}:{num(0, 60, True)}"
        text += rng.choice([" AM", " PM", " am", "", " XM", "AM"])
    mutation = rng.random()
    if mutation < 0.05:
        text = f"  {text} "
    elif mutation < 0.1:
        i = rng.randrange(len(text))
        text = text[:i] + rng.choice([" ", "x", ":", "/", ""]) + text[i + 1 :]
    return text


@pytest.mark.parametrize("date_only", [False, True])
def test_the_byte_level_reader_agrees_with_python_on_random_texts(date_only):
    rng = random.Random(20161204 + date_only)
    texts = [_random_text(rng, date_only) for _ in range(20000)]
    texts += ["4/12/2016 12:00:00 AM", "4/12/2016 12:00:00 PM", "2/29/2016 1:00:00 PM", "2/29/2015 1:00:00 PM"]
    texts += ["12/31/2016 23:59:59", "1/1/1970 0:00:00", "", " ", "4/12/2016 1:0:00 AM", "4/12/16 1:00:00 AM"]
    texts += ["12/ 5/2016 1:00:00", " 4/12/2016 1:00:00 AM", "4/12/2016\t1:00:00", "4/ 1/2016", "  1/1/2016"]
    texts += ["12/31/2016 12:59:59 PM", "012/1/2016 1:00:00", "1/1/2016 012:00:00", "1//2016 1:00:00", "1 /1/2016"]
    texts += ["1/1/2016 1:00:00 AM AM", "é/1/2016 1:00:00", "1/1/ 2016 1:00:00", "1/1/2016 :00:00", "12/31/2016 "]
    column = pa.chunked_array([pa.array(texts[:9000]), pa.array(texts[9000:] + [None])])
    ts, ok = read_times(column, date_only)
    want = [_reference(t, date_only) for t in texts] + [None]
    got = [int(v) if good else None for v, good in zip(ts, ok, strict=True)]
    assert got == want
    valid = sum(w is not None for w in want)
    assert 0.1 * len(want) < valid < 0.9 * len(want)  # both kinds well represented


def test_what_arrow_strptime_would_invent_is_not_a_time():
    texts = [
        "2/30/2016 1:00:00 AM",
        "4/12/2016 1:00:60 PM",
        "4/12/16 1:00:00 AM",
        "4/12/2016 0:00:00 AM",
        "4/12/2016 13:00:00 PM",
    ]
    _, ok = read_times(pa.array(texts))
    assert not ok.any()
