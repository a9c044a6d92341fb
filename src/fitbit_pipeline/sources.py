"""Sources: where the bytes come from (a local folder today, any fsspec URL such as ``s3://``).

Lists the documents below a source URI (loose JSON files and the members of zip
exports, read in place, never extracted to disk), gives each a stable identity (its
``source_file`` and a content fingerprint) and a delivery rank, and reads their bytes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import posixpath
import zipfile
import zlib
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import fsspec

from .errors import ConfigError
from .layouts import export_end_date

MAX_MEMBER_BYTES = 1 << 30  # uncompressed size of one zip member
MAX_COMPRESSION_RATIO = 200  # zip-bomb guard: uncompressed / compressed


@dataclass(frozen=True)
class SourceDoc:
    """One JSON document to parse: a loose file or a zip member."""

    source_file: str  # unique identity: the object URI, plus ``!member`` for zip members
    object_path: str  # URI of the object that holds the bytes (the file or the archive)
    member: str | None
    logical_path: str  # path below the source root (or the member name) used to match layouts
    size: int
    fingerprint: str  # changes when the content changes
    delivery_rank: str  # larger wins when two deliveries of the same participant-day compete
    error: str | None = None  # set when the document cannot be read at all
    transient: bool = False  # the error is a storage or network fault: the next run tries again
    rule_id: str | None = None  # the rule of ``error`` (default: file_unreadable, or read_failed if transient)
    parts: tuple[SourceDoc, ...] = ()  # documents read together as one delivery (Google Health, see bundles.py)

    @property
    def archive(self) -> str | None:
        return self.object_path if self.member is not None else None

    def as_dict(self) -> dict[str, Any]:
        """The ``dataclasses.asdict`` form, built directly (a weekly plan holds thousands of documents, and
        ``asdict`` deep-copies every field: half a second for 5,400)."""
        data = {f: getattr(self, f) for f in _DOC_FIELDS}
        data["parts"] = [p.as_dict() for p in self.parts]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SourceDoc:
        """A document from its :meth:`as_dict` form (the saved plan of a run)."""
        return cls(**{**data, "parts": tuple(cls.from_dict(p) for p in data.get("parts") or ())})


_DOC_FIELDS = tuple(f.name for f in fields(SourceDoc) if f.name != "parts")


@dataclass
class Listing:
    docs: list[SourceDoc]
    objects: int
    bytes: int


def storage_options(uri: str) -> dict[str, Any]:
    """Options for object stores: the standard AWS credential chain (never our own config), the
    region (``AWS_REGION``), an endpoint override for S3-compatible stores (``AWS_ENDPOINT_URL``),
    and bounded retries with exponential backoff and jitter (botocore's adaptive mode) for
    throttling (503 SlowDown), 500s, connection resets and timeouts."""
    if not uri.startswith(("s3://", "s3a://")):
        return {}
    opts: dict[str, Any] = {
        "config_kwargs": {
            "retries": {"max_attempts": env_count("FITBIT_S3_MAX_ATTEMPTS", 8), "mode": "adaptive"},
            "connect_timeout": 10,
            "read_timeout": 60,
        },
        "use_listings_cache": False,  # a run must see what is in the bucket now
    }
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        opts["endpoint_url"] = endpoint
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        opts["client_kwargs"] = {"region_name": region}
    return opts


def filesystem(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem of ``uri`` (local, ``s3://``, ...) and the path within it."""
    fs, root = fsspec.core.url_to_fs(uri, **storage_options(uri))
    return fs, root


def is_local(uri: str) -> bool:
    """Whether ``uri`` names the local filesystem (a plain path or ``file://``)."""
    return "://" not in uri or uri.startswith("file://")


def full_uri(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """``path`` of ``fs`` as a URI other tools can open (``s3://bucket/key``); local paths stay paths."""
    return fs.unstrip_protocol(path) if not isinstance(fs, fsspec.implementations.local.LocalFileSystem) else path


def _mtime(info: dict[str, Any]) -> dt.datetime:
    value = info.get("mtime", info.get("LastModified", info.get("last_modified")))
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value, dt.UTC).replace(tzinfo=None)
    return dt.datetime(1970, 1, 1)


def _fingerprint(info: dict[str, Any], mtime: dt.datetime | None = None) -> str:
    etag = info.get("ETag") or info.get("etag")
    if etag:
        return f"etag:{str(etag).strip(chr(34))}:{info.get('size')}"
    return f"{info.get('size')}:{(mtime or _mtime(info)).isoformat()}"


def delivery_rank(export_end: dt.date | None, object_time: dt.datetime, source_file: str) -> str:
    """A string that sorts like (export end date, object time, source file)."""
    end = export_end.isoformat() if export_end else "0000-00-00"
    return f"{end}|{object_time.isoformat(timespec='microseconds')}|{source_file}"  # strftime's format, faster


def _object_time(rank: str) -> dt.datetime:
    return dt.datetime.fromisoformat(rank.split("|")[1])


def delivery_of(parts: Sequence[SourceDoc], source_file: str, logical_path: str, end: dt.date | None) -> SourceDoc:
    """Documents read together as one delivery named ``source_file``: its fingerprint changes when any part
    changes or a part appears, its rank is (``end``, the newest part's time), and one unreadable part rejects
    it whole (half a delivery would replace a whole one); that part is the one sampled and quarantined."""
    broken = next((d for d in parts if d.error), None)
    held = broken or parts[0]
    digest = hashlib.sha1("\n".join(f"{d.source_file} {d.fingerprint}" for d in parts).encode()).hexdigest()
    return SourceDoc(
        source_file=source_file,
        object_path=held.object_path,
        member=held.member,
        logical_path=logical_path,
        size=sum(d.size for d in parts),
        fingerprint=f"parts:{digest}",
        delivery_rank=delivery_rank(end, max(_object_time(d.delivery_rank) for d in parts), source_file),
        error=f"{broken.logical_path}: {broken.error}" if broken else None,
        transient=any(d.transient for d in parts),
        rule_id=broken.rule_id if broken else None,
        parts=tuple(parts),
    )


def marked(doc: SourceDoc, rule_id: str, why: str) -> SourceDoc:
    """``doc`` listed under ``rule_id`` with the reason (a file of an export no table holds, say); the rule's
    severity decides whether it is skipped or rejected. Its fingerprint records the rule, so that the same
    file read as a document later counts as changed."""
    return replace(doc, fingerprint=f"{rule_id}:{doc.fingerprint}", error=why, rule_id=rule_id)


def env_count(name: str, default: int) -> int:
    """The positive whole number in environment variable ``name`` (``default`` when unset or empty), read when
    called: a transform worker sees the value its run handed it, not the one its fork server started with."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(name, f"expected a whole number of at least 1, got {raw!r}")
    return value


def fetch_concurrency() -> int:
    """Loose objects fetched at once per transform worker (``FITBIT_S3_CONCURRENCY``, default 16)."""
    return env_count("FITBIT_S3_CONCURRENCY", 16)


class ArchiveError(ValueError):
    """An archive member that breaks a safety limit (never retried: the bytes are the problem)."""


_NETWORK_MODULES = ("botocore", "aiobotocore", "aiohttp", "urllib3", "requests", "http")


def is_transient(exc: BaseException) -> bool:
    """A fault of the storage or the network (throttling or 5xx after the retries, reset, timeout,
    an object gone since the listing), as opposed to a fault of the bytes (a corrupt or unsafe archive)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, zipfile.BadZipFile | EOFError | zlib.error | ArchiveError | NotImplementedError):
            return False
        if isinstance(seen, OSError) or type(seen).__module__.split(".")[0] in _NETWORK_MODULES:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def unsafe_member(name: str) -> str | None:
    """Why a zip member name is unsafe (absolute, drive letter, or ``..``), else None."""
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "absolute member path"
    if ".." in parts:
        return "member path escapes the archive ('..')"
    return None


def file_size_limit() -> int:
    """The size limit of a loose file: setting ``FITBIT_MAX_FILE_BYTES`` (environment, then ``.env``)."""
    from .settings import Settings  # lazily: the settings import most of the package

    return Settings().fitbit_max_file_bytes


def _duplicate_members(uri: str, name: str, members: list[zipfile.ZipInfo], rank: str) -> SourceDoc:
    """One rejected document for every member of a name that occurs more than once (which one is meant is
    ambiguous; ``zipfile`` would read the last). Its fingerprint is stable across runs."""
    crcs = ",".join(f"{m.CRC:08x}" for m in members)
    size = sum(m.file_size for m in members)
    return SourceDoc(
        f"{uri}!{name}",
        uri,
        name,
        name,
        size,
        f"crc:{crcs}:{size}",
        rank,
        error=f"{len(members)} of them",
        rule_id="zip_duplicate_member",
    )


def _zip_docs(fs: fsspec.AbstractFileSystem, path: str, info: dict[str, Any]) -> Iterator[SourceDoc]:
    uri = full_uri(fs, path)
    rank_end = export_end_date(posixpath.basename(path))
    obj_time = _mtime(info)
    try:
        with fs.open(path, "rb") as fh, zipfile.ZipFile(fh) as zf:
            members = [m for m in zf.infolist() if not m.is_dir()]
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        yield SourceDoc(
            uri,
            uri,
            None,
            posixpath.basename(path),
            int(info.get("size") or 0),
            _fingerprint(info),
            delivery_rank(rank_end, obj_time, uri),
            error=f"unreadable zip archive: {type(exc).__name__}: {exc}",
            transient=is_transient(exc),
        )
        return
    by_name: dict[str, list[zipfile.ZipInfo]] = defaultdict(list)
    for m in members:
        by_name[m.filename].append(m)
    for name, same in by_name.items():
        if len(same) > 1:
            yield _duplicate_members(uri, name, same, delivery_rank(rank_end, obj_time, f"{uri}!{name}"))
    for m in members:
        if len(by_name[m.filename]) > 1:
            continue
        source_file = f"{uri}!{m.filename}"
        error = unsafe_member(m.filename)
        if error is None and m.file_size > MAX_MEMBER_BYTES:
            error = f"member larger than {MAX_MEMBER_BYTES} bytes uncompressed"
        if error is None and m.file_size > 1_000_000 and m.file_size > MAX_COMPRESSION_RATIO * max(m.compress_size, 1):
            error = f"compression ratio above {MAX_COMPRESSION_RATIO} (zip bomb guard)"
        yield SourceDoc(
            source_file=source_file,
            object_path=uri,
            member=m.filename,
            logical_path=m.filename,
            size=m.file_size,
            fingerprint=f"crc:{m.CRC:08x}:{m.file_size}",
            delivery_rank=delivery_rank(rank_end, obj_time, source_file),
            error=error,
        )


# The rules of a listed entry that is not a document (never opened): what :func:`_not_a_file` decides.
NOT_A_DOCUMENT = ("link_to_directory", "special_file", "outside_source")


def _not_a_file(fs: fsspec.AbstractFileSystem, root: str, path: str, info: dict[str, Any]) -> tuple[str, str] | None:
    """(rule, reason) for a local entry that is not a regular file inside the source root, decided without
    opening it: a link leading outside the root, a link to a directory, a FIFO, socket or device."""
    if not isinstance(fs, fsspec.implementations.local.LocalFileSystem) or info.get("type") == "file":
        return None
    real = os.path.realpath(path)
    base = os.path.realpath(root)
    if os.path.isdir(real):  # never followed, wherever it leads
        return "link_to_directory", "a link to a directory: not followed"
    if info.get("islink") and os.path.commonpath([real, base]) != base:
        return "outside_source", "a link that leads outside the source root: not followed, never read"
    if not os.path.isfile(real):
        return "special_file", "not a regular file (FIFO, socket, device or broken link): never opened"
    return None


def _local_find(root: str) -> dict[str, dict[str, Any]]:
    """What fsspec's ``LocalFileSystem.find(root, detail=True)`` returns, with the fields the listing reads
    (``name``, ``size``, ``type``, ``islink``, ``mtime``), from one ``scandir`` per folder: fsspec also stats
    every folder again and normalises every path, a third of a weekly run's listing of a year's inbox.
    As there: links are not followed (a link is ``other``, with its target's size and its own time), and
    unreadable folders are left out."""
    found: dict[str, dict[str, Any]] = {}
    folders = [root]
    while folders:
        try:
            entries = os.scandir(folders.pop())
        except OSError:
            continue
        with entries:
            for e in entries:
                try:
                    if e.is_dir(follow_symlinks=False):
                        folders.append(e.path)
                        continue
                    st, link = e.stat(follow_symlinks=False), e.is_symlink()
                    size = st.st_size
                    if link:
                        try:
                            size = e.stat(follow_symlinks=True).st_size
                        except OSError:
                            size = 0
                    kind = "file" if e.is_file(follow_symlinks=False) else "other"
                    found[e.path] = {"name": e.path, "size": size, "type": kind, "islink": link, "mtime": st.st_mtime}
                except FileNotFoundError:
                    continue
    return found


def list_documents(uri: str, max_file_bytes: int | None = None) -> Listing:
    """Every document below ``uri``, sorted by ``source_file``. Never raises for one bad object.

    Nothing outside the source root is read: links leading out of it are rejected unopened; a loose file
    above ``max_file_bytes`` (default :func:`file_size_limit`) is rejected without being parsed."""
    fs, root = filesystem(uri)
    if not fs.exists(root):
        return Listing([], 0, 0)
    limit = file_size_limit() if max_file_bytes is None else max_file_bytes
    local = isinstance(fs, fsspec.implementations.local.LocalFileSystem) and os.path.isdir(root)
    found = _local_find(root) if local else fs.find(root, detail=True)
    docs: list[SourceDoc] = []
    total = 0
    root_prefix = root.rstrip("/") + "/"
    objects = len(found)
    for path in sorted(found):
        info = found.pop(path)  # each entry freed as its document is made: the listing is not held twice
        if info.get("type") == "directory":
            continue
        rel = path[len(root_prefix) :] if path.startswith(root_prefix) else posixpath.basename(path)
        uri_path = full_uri(fs, path)
        size = int(info.get("size") or 0)
        mtime = _mtime(info)
        rank = delivery_rank(None, mtime, uri_path)
        odd = _not_a_file(fs, root, path, info)
        if odd is not None:
            rule_id, reason = odd
            fingerprint = f"{rule_id}:{_fingerprint(info)}"
            docs.append(SourceDoc(uri_path, uri_path, None, rel, 0, fingerprint, rank, reason, rule_id=rule_id))
            continue
        total += size
        if path.lower().endswith(".zip"):
            docs.extend(_zip_docs(fs, path, info))
            continue
        error, rule_id = None, None
        if size > limit:
            error, rule_id = f"larger than {limit} bytes", "file_too_large"
        fingerprint = _fingerprint(info, mtime)
        docs.append(SourceDoc(uri_path, uri_path, None, rel, size, fingerprint, rank, error, rule_id=rule_id))
    from .account_export.bundles import bundle as account_exports
    from .fitabase.bundles import bundle as fitabase_exports
    from .google_health.bundles import bundle

    docs = account_exports(fitabase_exports(bundle(docs)), full_uri(fs, root))
    docs.sort(key=lambda d: d.source_file)
    return Listing(docs, objects, total)


class Reader:
    """Reads document bytes, keeping the current zip archive open between members."""

    def __init__(self, fs: fsspec.AbstractFileSystem) -> None:
        self.fs = fs
        self._archive: str | None = None
        self._handle: Any = None
        self._zip: zipfile.ZipFile | None = None
        self._fetched: dict[str, bytes | BaseException] = {}
        self.bytes_read = 0

    def prefetch(self, docs: Sequence[SourceDoc]) -> None:
        """Fetch the loose objects among ``docs`` concurrently (object stores only; at most
        :func:`fetch_concurrency` requests in flight); :meth:`read` then takes them from memory. A chunk is
        bounded in bytes, so is this. Zip members are read from their archive by range requests instead."""
        if isinstance(self.fs, fsspec.implementations.local.LocalFileSystem):
            return
        loose = [p for d in docs if d.error is None for p in (d.parts or (d,)) if p.member is None]
        paths = [self.fs._strip_protocol(d.object_path) for d in loose]
        if len(paths) > 1:
            self._fetched = self.fs.cat(paths, on_error="return", batch_size=fetch_concurrency())

    def sample(self, doc: SourceDoc, keep: int) -> tuple[bytes, int, str]:
        """(the first ``keep`` bytes, the size, the SHA-256) of a loose object, streamed: memory stays bounded."""
        digest = hashlib.sha256()
        size = 0
        with self.fs.open(self.fs._strip_protocol(doc.object_path), "rb") as fh:
            head = fh.read(keep)
            digest.update(head)
            size += len(head)
            while block := fh.read(1 << 20):
                digest.update(block)
                size += len(block)
        return head, size, digest.hexdigest()

    def read_parts(self, doc: SourceDoc) -> list[tuple[SourceDoc, bytes]]:
        """Each document of a delivery with its bytes (one for an ordinary document)."""
        return [(part, self.read(part)) for part in doc.parts or (doc,)]

    def read(self, doc: SourceDoc) -> bytes:
        path = self.fs._strip_protocol(doc.object_path)
        if doc.member is None:
            fetched = self._fetched.pop(path, None)
            if isinstance(fetched, BaseException):
                raise fetched
            data = fetched if fetched is not None else self.fs.cat_file(path)
        else:
            if self._archive != doc.object_path:
                self.close()
                self._handle = self.fs.open(path, "rb")
                self._zip = zipfile.ZipFile(self._handle)
                self._archive = doc.object_path
            assert self._zip is not None
            with self._zip.open(doc.member) as fh:
                data = fh.read(MAX_MEMBER_BYTES + 1)
            if len(data) > MAX_MEMBER_BYTES:
                raise ArchiveError("member larger than declared (zip bomb guard)")
        self.bytes_read += len(data)
        return data

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
        if self._handle is not None:
            self._handle.close()
        self._zip = self._handle = self._archive = None

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
