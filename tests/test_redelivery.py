"""Issue 13, item 2: a corrected file always replaces its own earlier delivery, whatever its mtime says;
between different deliveries the newest still wins."""

from __future__ import annotations

import os

import duckdb

from .hardening_support import Site, steps_doc, write
from .lake_support import read_lake

DAY = "2024-03-04"


def test_corrected_file_with_older_mtime_replaces_its_earlier_version(tmp_path) -> None:
    site = Site(tmp_path)
    path = write(site, f"P1/{DAY}/steps.json", steps_doc(DAY, [10, 20, 30]))
    os.utime(path, (1_700_000_000, 1_700_000_000))
    assert site.run().status == "succeeded"
    assert site.sql("SELECT SUM(value) FROM rural.intraday_steps") == [(60,)]

    path.write_bytes(steps_doc(DAY, [10, 20, 31, 40]))
    os.utime(path, (1_600_000_000, 1_600_000_000))  # as cp -p / rsync -a / unzip leave it: older
    s = site.run()
    assert s.status == "succeeded"
    assert s.totals["files_changed"] == 1
    row = site.file("steps.json")
    assert (row["status"], row["rows_loaded"], row["rows_superseded"]) == ("loaded", 5, 0)
    assert site.sql("SELECT COUNT(*), SUM(value) FROM rural.intraday_steps") == [(4, 101)]
    assert site.sql("SELECT value FROM rural.daily_steps") == [(101,)]
    lake = read_lake(site.lake, "intraday_steps")
    assert duckdb.sql(f"SELECT COUNT(*), SUM(value) FROM {lake}").fetchall() == [(4, 101)]
    site.identity_holds()
    assert site.run().status == "nothing-new"


def test_between_different_deliveries_the_newest_still_wins(tmp_path) -> None:
    site = Site(tmp_path)
    new = write(site, f"b/P1/{DAY}/steps.json", steps_doc(DAY, [5]))
    os.utime(new, (1_700_000_000, 1_700_000_000))
    assert site.run().status == "succeeded"
    old = write(site, f"a/P1/{DAY}/steps.json", steps_doc(DAY, [7]))
    os.utime(old, (1_600_000_000, 1_600_000_000))
    assert site.run().status == "succeeded"
    assert site.file(f"a/P1/{DAY}/steps.json")["status"] == "superseded"
    assert site.file(f"b/P1/{DAY}/steps.json")["status"] == "loaded"
    assert site.sql("SELECT SUM(value) FROM rural.intraday_steps") == [(5,)]
    site.identity_holds()
