"""Issue 13, items 3, 8 and 9: what the source holds besides plain documents. Duplicate zip members, files
above the size limit, links out of the source root, links to directories and other special entries."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from fitbit_pipeline.settings import Settings
from fitbit_pipeline.sources import file_size_limit, list_documents
from fitbit_pipeline.transform import QUARANTINE_HEAD_BYTES

from .hardening_support import Site, steps_doc, write

DAY = "2024-03-04"
MEMBER = f"fitbit_intraday_activities_steps/P1/activities_steps_date_{DAY}_1d_1min.json"
ARCHIVE = "RK.E1.proj_20240301-20240310.zip"


def _rules(site: Site) -> dict[str, str]:
    return dict(site.sql("SELECT source_file, COALESCE(rule_id, status) FROM rural.pipeline_files"))


# ---- item 3: duplicate member names in a zip --------------------------------------------------------------


def _zip_with_duplicates(site: Site) -> None:
    other = MEMBER.replace("steps", "floors")
    with zipfile.ZipFile(site.source / ARCHIVE, "w") as zf, pytest.warns(UserWarning, match="Duplicate name"):
        zf.writestr(MEMBER, steps_doc(DAY, [1, 2]))
        zf.writestr(MEMBER, steps_doc(DAY, [7, 8, 9]))
        zf.writestr(other, steps_doc(DAY, [1]).replace(b"activities-steps", b"activities-floors"))


def test_duplicate_member_names_are_rejected_once_and_stable(tmp_path) -> None:
    site = Site(tmp_path)
    _zip_with_duplicates(site)
    s = site.run()
    assert s.status == "succeeded"
    rows = site.sql("SELECT source_file, status, rule_id, rows_read FROM rural.pipeline_files ORDER BY 1")
    assert [(r[0].split("!")[1], *r[1:]) for r in rows] == [
        (MEMBER.replace("steps", "floors"), "loaded", None, 2),
        (MEMBER, "rejected", "zip_duplicate_member", 0),
    ]
    assert site.sql("SELECT COUNT(*) FROM rural.intraday_steps") == [(0,)]
    assert site.sql("SELECT rule_id, message FROM rural.rejected_records") == [
        ("zip_duplicate_member", "the archive holds several members of this name: 2 of them")
    ]
    site.identity_holds()
    again = site.run()
    assert again.status == "nothing-new" and again.totals["files_changed"] == 0


# ---- item 8: size limit of loose files ---------------------------------------------------------------------


def test_a_file_above_the_limit_is_rejected_unparsed_with_a_bounded_quarantine_sample(tmp_path, monkeypatch) -> None:
    limit = 200_000
    monkeypatch.setenv("FITBIT_MAX_FILE_BYTES", str(limit))
    site = Site(tmp_path)
    write(site, f"P1/{DAY}/floors.json", steps_doc(DAY, [1]).replace(b"activities-steps", b"activities-floors"))
    big = write(site, f"P1/{DAY}/steps.json", steps_doc(DAY, [1, 2]))
    with open(big, "r+b") as fh:  # sparse: a valid document followed by a hole, just over the limit
        fh.truncate(limit + 1)
    s = site.run()
    assert s.status == "succeeded"
    row = site.file("steps.json")
    assert (row["status"], row["rule_id"], row["rows_read"]) == ("rejected", "file_too_large", 0)
    assert f"larger than {limit} bytes" in row["reason"]
    assert site.file("floors.json")["status"] == "loaded"
    raws = list(site.lake.rglob("quarantine/**/*.raw"))
    assert len(raws) == 1 and raws[0].stat().st_size == QUARANTINE_HEAD_BYTES
    meta = json.loads(raws[0].with_suffix(".json").read_text())
    assert meta["size"] == limit + 1 and meta["kept_bytes"] == QUARANTINE_HEAD_BYTES
    assert meta["sha256"] == hashlib.sha256(big.read_bytes()).hexdigest()
    assert site.run().status == "nothing-new"


def test_the_limit_has_a_sane_default_and_comes_from_the_settings(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("FITBIT_MAX_FILE_BYTES", raising=False)
    monkeypatch.chdir(tmp_path)
    assert Settings().fitbit_max_file_bytes == 256 << 20 == file_size_limit()
    (tmp_path / ".env").write_text("FITBIT_MAX_FILE_BYTES=1000\n")
    assert file_size_limit() == 1000
    (tmp_path / "P1" / DAY).mkdir(parents=True)
    (tmp_path / "P1" / DAY / "steps.json").write_bytes(b" " * 1001)
    (doc,) = list_documents(str(tmp_path / "P1")).docs
    assert doc.rule_id == "file_too_large"
    assert list_documents(str(tmp_path / "P1"), max_file_bytes=2000).docs[0].rule_id is None


# ---- item 9: links and special files -------------------------------------------------------------------------


def test_links_out_of_the_source_are_never_read(tmp_path) -> None:
    site = Site(tmp_path / "site")
    secret = tmp_path / "secret.json"
    secret.write_bytes(b'{"not": "yours"} SECRET-BYTES')
    os.symlink("/etc/passwd", site.source / "passwd.json")
    (site.source / "P1" / DAY).mkdir(parents=True)
    os.symlink(secret, site.source / "P1" / DAY / "steps.json")
    os.symlink(tmp_path / "nowhere.zip", site.source / "export.zip")  # dangling and outside
    write(site, f"P2/{DAY}/steps.json", steps_doc(DAY, [1, 2]))
    (site.source / "P3" / DAY).mkdir(parents=True)
    os.symlink(site.source / "P2" / DAY / "steps.json", site.source / "P3" / DAY / "steps.json")  # inside
    s = site.run()
    assert s.status == "succeeded"
    rules = {k.rsplit("/source/", 1)[1]: v for k, v in _rules(site).items()}
    assert rules == {
        "passwd.json": "outside_source",
        f"P1/{DAY}/steps.json": "outside_source",
        "export.zip": "outside_source",
        f"P2/{DAY}/steps.json": "loaded",
        f"P3/{DAY}/steps.json": "loaded",  # a link within the root is read as usual
    }
    assert s.bytes_read == 2 * len(steps_doc(DAY, [1, 2]))
    assert site.sql("SELECT COUNT(*) FROM rural.rejected_records WHERE rule_id = 'outside_source'") == [(3,)]
    kept = b"".join(p.read_bytes() for p in site.lake.rglob("quarantine/**/*") if p.is_file())
    assert b"root:" not in kept and b"SECRET-BYTES" not in kept


@contextlib.contextmanager
def _unblocking(fifo: Path) -> Iterator[None]:
    """A FIFO whose readers never block for long: if anything opens it (a regression), a writer shows up
    and closes at once, so the test fails instead of hanging."""
    done = threading.Event()

    def writer() -> None:
        while not done.wait(0.05):
            with contextlib.suppress(OSError):  # ENXIO: nobody is reading, as it should be
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def test_links_to_directories_and_fifos_are_skipped_not_failed(tmp_path) -> None:
    site = Site(tmp_path / "site")
    outside = tmp_path / "elsewhere" / DAY
    outside.mkdir(parents=True)
    (outside / "steps.json").write_bytes(steps_doc(DAY, [5]))
    for i in range(4):
        os.symlink(tmp_path / "elsewhere", site.source / f"link{i}")
    os.mkfifo(site.source / "pipe.json")
    for i in range(10):
        write(site, f"P{i}/{DAY}/steps.json", steps_doc(DAY, [1, 2]))
    with _unblocking(site.source / "pipe.json"):
        s = site.run(gate=None)  # the default gate: 5 failures in 15 files would stop the run, skips do not
    assert s.status == "succeeded"
    rows = site.sql("SELECT status, rule_id, COUNT(*) FROM rural.pipeline_files GROUP BY ALL ORDER BY ALL")
    assert rows == [("loaded", None, 10), ("skipped", "link_to_directory", 4), ("skipped", "special_file", 1)]
    assert s.totals["files_rejected"] == 0
    assert site.sql(
        "SELECT rule_id, severity, COUNT(*) FROM rural.data_quality_findings WHERE participant_id IS NULL "
        "GROUP BY ALL ORDER BY ALL"
    ) == [("link_to_directory", "warning", 4), ("special_file", "warning", 1)]
    assert site.sql("SELECT COUNT(*) FROM rural.rejected_records") == [(0,)]
    assert site.sql("SELECT COUNT(*) FROM rural.intraday_steps") == [(20,)]
    site.identity_holds()
    assert site.run(gate=None).status == "nothing-new"  # not retried


def test_the_local_listing_sees_what_fsspec_find_sees(tmp_path) -> None:
    """``sources._local_find`` replaces fsspec's local ``find`` for speed: the same entries with the same name,
    size, type, link flag and time, for files, nested folders, links inside and out, links to folders, broken
    links and a FIFO (never followed into, never opened)."""
    import fsspec

    from fitbit_pipeline.sources import _local_find

    root = tmp_path / "source"
    (root / "P1" / DAY).mkdir(parents=True)
    (root / "P1" / DAY / "steps.json").write_bytes(steps_doc(DAY, [1, 2]))
    (root / "export.zip").write_bytes(b"PK")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "secret.json").write_bytes(b"{}" * 50)
    os.symlink(root / "P1" / DAY / "steps.json", root / "inside.json")
    os.symlink(tmp_path / "elsewhere" / "secret.json", root / "outside.json")
    os.symlink(tmp_path / "elsewhere", root / "folder-link")
    os.symlink(tmp_path / "nowhere.json", root / "broken.json")
    os.mkfifo(root / "pipe.json")
    ours = _local_find(str(root))
    theirs = fsspec.filesystem("file").find(str(root), detail=True)
    assert set(ours) == set(theirs) and len(ours) == 7
    fields = ("name", "size", "type", "islink", "mtime")
    for path, info in theirs.items():
        assert [ours[path][f] for f in fields] == [info[f] for f in fields], path
