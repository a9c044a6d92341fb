"""The ``fitbit-pipeline`` command line: a thin shell over :mod:`fitbit_pipeline.pipeline`."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import logging
import os
from collections.abc import Callable
from typing import Annotated, Any, ParamSpec

import click
import typer
from pydantic import ValidationError
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import pipeline, preflight
from .errors import EXIT_CONFIG, EXIT_GATED, ConfigError, exit_code, mask_url, safe_message
from .notify import Notifier, failure_notification, run_notification
from .settings import Settings
from .sources import is_local
from .transform import use_system_allocator

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Fitbit intraday data pipeline.")
console = Console(stderr=False)
if not console.is_terminal:  # logs and CI: wide enough for the summary tables
    console.width = 160
err = Console(stderr=True)

SourceOpt = Annotated[str | None, typer.Option("--source", help="Raw exports: folder or URI [FITBIT_SOURCE]")]
LakeOpt = Annotated[str | None, typer.Option("--lake", help="Parquet lake: folder or URI [FITBIT_LAKE]")]
WarehouseOpt = Annotated[str | None, typer.Option("--warehouse", help="Warehouse: DuckDB file path [FITBIT_WAREHOUSE]")]
SchemaOpt = Annotated[str | None, typer.Option("--schema", help="Warehouse schema [REDSHIFT_SCHEMA, default rural]")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON")]
P = ParamSpec("P")


def _error_line(label: str, text: str) -> None:
    """One line on stderr (never wrapped, never a traceback)."""
    err.print(f"[red]{label}:[/red] {escape(' '.join(text.split()))}", highlight=False, soft_wrap=True)


def _guard(command: Callable[P, None]) -> Callable[P, None]:
    """Every command ends an error with one line and the exit code of :func:`errors.exit_code`."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort, click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except Exception as exc:
            raise typer.Exit(_report_error(command.__name__.replace("_", " "), exc)) from None

    return wrapper


def _report_error(command: str, exc: Exception) -> int:
    """Print ``exc`` as one line (a configuration error names its setting); its exit code."""
    code = exit_code(exc)
    if code == EXIT_CONFIG:
        _error_line("configuration error", str(exc) if isinstance(exc, ConfigError) else safe_message(exc))
    else:
        _error_line(f"{command} failed", safe_message(exc))
    return code


def _setting(flag: str | None, flag_name: str, env_name: str, bucket: str | None = None, bucket_env: str = "") -> str:
    """The name of the setting a value came from, for configuration errors."""
    if flag is not None:
        return flag_name
    return bucket_env if bucket else env_name


def _load_settings() -> Settings:
    """Settings from the environment and .env, checked up front: a bad value is a clear error, exit 2."""
    try:
        s = Settings()
        s.limits()
        s.gate_limits()
    except ValidationError as exc:  # name the setting, never echo its value (it may be a secret)
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        err.print(f"[red]configuration error:[/red] {problems}", markup=True, highlight=False)
        raise typer.Exit(2) from None
    except ValueError as exc:
        err.print(f"[red]configuration error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
    return s


def _settings(source: str | None, lake: str | None, warehouse: str | None, schema: str | None) -> Settings:
    overrides = {
        k: v
        for k, v in {
            "fitbit_source": source,
            "fitbit_lake": lake,
            "fitbit_warehouse": warehouse,
            "redshift_schema": schema,
        }.items()
        if v is not None
    }
    s = _load_settings()
    if source is not None:
        s.fitbit_source_bucket = None
    if lake is not None:
        s.fitbit_dest_bucket = None
    return s.model_copy(update=overrides)


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details")] = False) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    use_system_allocator()  # the run's own process, as its workers


@app.command()
@_guard
def run(
    source: SourceOpt = None,
    lake: LakeOpt = None,
    warehouse: WarehouseOpt = None,
    schema: SchemaOpt = None,
    workers: Annotated[int, typer.Option(help="Transform processes (0 = one per core)")] = 0,
    sample_if_empty: Annotated[
        bool,
        typer.Option(
            "--sample-if-empty",
            help="Generate sample data first when the local source is missing or holds no files "
            "(otherwise an empty source is a configuration error)",
        ),
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Merge even when the validation gate objects")] = False,
    retry_rejected: Annotated[
        bool, typer.Option("--retry-rejected", help="Re-read files that were rejected or had rejected rows")
    ] = False,
    engine: Annotated[
        str | None,
        typer.Option(help="Transform engine: local (process pool) or spark (local[workers or *]) [FITBIT_ENGINE]"),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """One incremental run: new and changed files are parsed, validated, staged and merged.

    Exit codes: 0 success (rejected records do not fail a run), 1 the run failed, 2 a configuration
    error (a missing or empty source, an unusable lake or warehouse, no credentials, unreachable),
    3 the validation gate stopped the run before production was touched.
    """
    s = _settings(source, lake, warehouse, schema)
    engine = engine or s.fitbit_engine
    try:
        pipeline.transformer(engine)
        zones = s.zone_map()
    except (ValueError, ImportError, OSError) as exc:
        hint = " (install the extra: pip install 'fitbit-pipeline[spark]')" if isinstance(exc, ImportError) else ""
        _error_line("configuration error", f"{exc}{hint}")
        raise typer.Exit(EXIT_CONFIG) from None
    src = s.source_uri()
    if sample_if_empty and is_local(src):
        _sample_if_empty(src, quiet=as_json)
    bucket_settings = (s.fitbit_source_bucket, "FITBIT_SOURCE_BUCKET", s.fitbit_dest_bucket, "FITBIT_DEST_BUCKET")
    preflight.check_source(src, _setting(source, "--source", "FITBIT_SOURCE", *bucket_settings[:2]))
    preflight.check_lake(s.lake_uri(), _setting(lake, "--lake", "FITBIT_LAKE", *bucket_settings[2:]))
    preflight.check_warehouse(s.warehouse_target(), _setting(warehouse, "--warehouse", "FITBIT_WAREHOUSE"))
    progress = _progress("transforming", as_json)
    task = progress.add_task("files", total=None)
    with progress:
        try:
            summary = pipeline.run(
                src,
                s.lake_uri(),
                s.warehouse_target(),
                s.redshift_schema,
                workers=workers or s.fitbit_workers,
                limits=s.limits(),
                gate=s.gate_limits(),
                force=force,
                retry_rejected=retry_rejected,
                valid_day_minutes=s.valid_day_minutes(),
                on_start=lambda n: progress.update(task, total=n),
                on_progress=lambda n: progress.advance(task, n),
                engine=engine,
                zones=zones,
            )
        except Exception as exc:
            code = _report_error("run", exc)
            Notifier(s.notify_config()).send(failure_notification("run", "fitbit-pipeline run", exc))
            raise typer.Exit(code) from None
    Notifier(s.notify_config()).send(run_notification(summary.as_dict()))
    if as_json:
        print(json.dumps(summary.as_dict(), indent=2))
    else:
        _print_summary(summary, src, s)
    if summary.status == "gated":
        raise typer.Exit(EXIT_GATED)


def _sample_if_empty(src: str, *, quiet: bool) -> None:
    """Write the quick start's sample into a local source that is missing or holds no files (asked for)."""
    import pathlib

    from .sample_data import generate

    path = pathlib.Path(src.removeprefix("file://"))
    if path.exists() and preflight.has_local_files(path):
        return
    truth = generate(src, participants=3, days=7, start=dt.date.today() - dt.timedelta(days=8))
    if not quiet:
        console.print(
            f"[yellow]The source {src} held no files: generated a sample of {len(truth.files)} files "
            "(3 participants x 7 days x 6 activities), as --sample-if-empty asks.[/yellow]"
        )


def _progress(label: str, quiet: bool) -> Progress:
    """A progress bar of files on stderr (none with ``--json``)."""
    columns = (TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    return Progress(*columns, console=err, disable=quiet, transient=True)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _print_summary(summary: pipeline.RunSummary, src: str, s: Settings) -> None:
    t = summary.totals
    console.print(f"\n[bold]Run {summary.run_id}[/bold]: {summary.status} in {summary.duration_s:.1f} s")
    console.print(f"  source    {src}\n  lake      {s.lake_uri()}\n  warehouse {mask_url(s.warehouse_target())}")
    console.print(
        f"  files: found {t['files_found']}, new {t['files_new']}, changed {t['files_changed']}, "
        f"unchanged {t['files_unchanged']}, retried {t['files_retried']}, "
        f"loaded {t['files_loaded']}, rejected {t['files_rejected']}, "
        f"superseded {t['files_superseded']}"
    )
    console.print(
        f"  transferred: {summary.objects} objects listed ({_size(summary.bytes_listed)}), "
        f"{_size(summary.bytes_read)} of documents read (uncompressed)"
    )
    if summary.status == "nothing-new":
        console.print("  Nothing new: every file is already loaded.")
        return
    if summary.status == "gated":
        err.print(f"[red bold]{summary.message}[/red bold]")
        if summary.rules:
            err.print("  rejects by rule: " + ", ".join(f"{r} {n}" for r, n in summary.rules))
        return
    if summary.message:
        console.print(f"  [yellow]{summary.message}[/yellow]")
    table = Table(title="Per activity", title_justify="left")
    for col in (
        "activity",
        "files",
        "loaded",
        "rejected",
        "rows read",
        "rows loaded",
        "rejected",
        "dupes",
        "superseded",
        "warnings",
    ):
        table.add_column(col, justify="left" if col == "activity" else "right")
    for a, c in sorted(summary.per_activity.items()):
        table.add_row(
            a,
            *(
                str(c.get(k, 0))
                for k in (
                    "files_found",
                    "files_loaded",
                    "files_rejected",
                    "rows_read",
                    "rows_loaded",
                    "rows_rejected",
                    "rows_duplicate",
                    "rows_superseded",
                    "warnings",
                )
            ),
        )
    console.print(table)
    rows = Table(title="Rows loaded per table", title_justify="left", box=box.SIMPLE_HEAD)
    rows.add_column("table")
    rows.add_column("rows", justify="right")
    for name, n in summary.rows_by_table.items():
        rows.add_row(name, str(n))
    console.print(rows)
    if summary.rules:
        console.print("  rejects by rule: " + ", ".join(f"{r} {n}" for r, n in summary.rules))
        console.print("  see the rejected_records table (and pipeline_files.reason) for each file and row")


@app.command()
@_guard
def status(
    warehouse: WarehouseOpt = None,
    schema: SchemaOpt = None,
    limit: Annotated[int, typer.Option(help="How many runs")] = 10,
    as_json: JsonOpt = False,
) -> None:
    """The last runs and their statistics, read from the warehouse."""
    s = _settings(None, None, warehouse, schema)
    target = _existing_warehouse(s, warehouse)
    from .warehouse import open_warehouse

    with open_warehouse(target, s.redshift_schema) as wh:
        wh.ensure_schema()
        runs = wh.recent_runs(limit).to_pylist()
        if as_json:
            print(json.dumps(runs, default=str, indent=2))
            return
        if not runs:
            console.print("No runs recorded yet.")
            return
        table = Table(title=f"Last {len(runs)} runs ({mask_url(target)})", title_justify="left", box=box.SIMPLE_HEAD)
        cols = {
            "run_id": "run",
            "status": "status",
            "started_at": "started (UTC)",
            "duration_s": "secs",
            "files_found": "files",
            "files_loaded": "loaded",
            "files_rejected": "rejected",
            "rows_loaded": "rows loaded",
            "rows_rejected": "rows rejected",
            "warnings": "warnings",
        }
        for c, label in cols.items():
            table.add_column(
                label,
                no_wrap=True,
                min_width=len(label),
                justify="left" if c in ("run_id", "status", "started_at") else "right",
            )
        for r in runs:
            cells = {**r, "duration_s": f"{r['duration_s']:.1f}", "started_at": str(r["started_at"])[:16]}
            table.add_row(*(str(cells[c]) for c in cols))
        console.print(table)
        latest = runs[0]["run_id"]
        rules = wh.rule_counts(latest)
        if rules:
            console.print(f"Rejects by rule in {latest}: " + ", ".join(f"{r} {n}" for r, n in rules))


def _existing_warehouse(s: Settings, flag: str | None) -> str:
    """The warehouse target, checked; a DuckDB file that does not exist yet ends the command (exit 1)."""
    target = s.warehouse_target()
    preflight.check_warehouse(target, _setting(flag, "--warehouse", "FITBIT_WAREHOUSE"))
    if "://" not in target and target != "redshift" and not os.path.exists(target):
        err.print(f"No warehouse at {mask_url(target)} yet: run `fitbit-pipeline run` first.")
        raise typer.Exit(1)
    return target


@app.command()
@_guard
def verify(
    lake: LakeOpt = None,
    warehouse: WarehouseOpt = None,
    schema: SchemaOpt = None,
    limit: Annotated[int, typer.Option(help="How many differences to list")] = 20,
) -> None:
    """Compare the lake's current snapshot with the warehouse, per table and participant-day.

    Row counts and a content checksum; exit 1 when anything differs (the differences are listed, never values).
    """
    from . import verify as verifying
    from .lake import Lake
    from .warehouse import open_warehouse

    s = _settings(None, lake, warehouse, schema)
    the_lake = Lake(s.lake_uri(), s.redshift_schema)
    with open_warehouse(s.warehouse_target(), s.redshift_schema) as wh:
        wh.follow_lake(s.lake_uri())
        wh.ensure_schema()
        differences = verifying.compare(the_lake, wh)
        state = wh.lake_state()
    stale = {t for t, (snap, _) in state.items() if snap != the_lake.snapshots().get(t)}
    if not differences and not stale:
        console.print(f"Lake and warehouse agree: {len(the_lake.tables)} tables, every participant-day.")
        return
    for d in differences[:limit]:
        console.print(d.describe())
    if len(differences) > limit:
        console.print(f"... and {len(differences) - limit} more")
    if stale:
        console.print(f"warehouse behind the lake's snapshot in: {', '.join(sorted(stale))}")
    err.print(f"[red]{len(differences)} participant-day(s) differ[/red]")
    raise typer.Exit(1)


@app.command()
@_guard
def maintain(
    lake: LakeOpt = None,
    warehouse: WarehouseOpt = None,
    schema: SchemaOpt = None,
    snapshot_days: Annotated[
        float | None, typer.Option(help="Expire snapshots older than this [FITBIT_SNAPSHOT_RETENTION_DAYS]")
    ] = None,
    wait: Annotated[float, typer.Option(help="Seconds to wait for a run holding the lake")] = 0.0,
    as_json: JsonOpt = False,
) -> None:
    """Compact small lake files, expire old snapshots, remove unreferenced files, prune old staging and quarantine.

    Refuses while a run holds the lake (exit 1); completes an interrupted run first. Prints files, bytes and
    snapshots per table before and after.
    """
    from .maintenance import maintain as maintaining

    s = _settings(None, lake, warehouse, schema)
    retention = s.retention()
    if snapshot_days is not None:
        retention = dataclasses.replace(retention, snapshot_days=snapshot_days)
    target = _existing_warehouse(s, warehouse)
    report = maintaining(
        s.lake_uri(),
        target,
        s.redshift_schema,
        retention=retention,
        lock_timeout_s=wait,
        valid_day_minutes=s.valid_day_minutes(),
    )
    if as_json:
        print(json.dumps(dataclasses.asdict(report), indent=2))
        return
    table = Table(title="Lake maintenance", title_justify="left", box=box.SIMPLE_HEAD)
    for label in ("table", "files", "MB", "snapshots", "stored files", "compacted", "expired"):
        table.add_column(label, justify="left" if label == "table" else "right", no_wrap=True)
    for name, before in report.before.items():
        after = report.after[name]
        table.add_row(
            name,
            f"{before.data_files} -> {after.data_files}",
            f"{before.data_bytes / 1e6:.1f} -> {after.data_bytes / 1e6:.1f}",
            f"{before.snapshots} -> {after.snapshots}",
            f"{before.stored_files} -> {after.stored_files}",
            str(report.compacted.get(name, 0)),
            str(report.expired.get(name, 0)),
        )
    console.print(table)
    console.print(
        f"Removed {report.orphans_removed} unreferenced file(s), the staging of {len(report.staging_removed)} "
        f"ended run(s) and the quarantine of {len(report.quarantine_removed)} run(s)."
    )


@app.command()
@_guard
def forget(
    participant: Annotated[str, typer.Argument(help="The participant id, as in the tables")],
    reason: Annotated[str | None, typer.Option(help="Why (kept in pipeline_forgotten)")] = None,
    lake: LakeOpt = None,
    warehouse: WarehouseOpt = None,
    schema: SchemaOpt = None,
    wait: Annotated[float, typer.Option(help="Seconds to wait for a run holding the lake")] = 0.0,
    include_releases: Annotated[
        bool, typer.Option(help="Rewrite the releases holding the participant too (default: keep them, listed)")
    ] = False,
) -> None:
    """Remove a participant who withdrew consent from every table, the lake's snapshots, the staging and the
    quarantine; later deliveries of the participant's files are skipped.

    Records a salted hash of the id, never the id (pipeline_forgotten). Refuses while a run holds the lake.
    """
    from .forget import forget as forgetting

    s = _settings(None, lake, warehouse, schema)
    target = _existing_warehouse(s, warehouse)
    report = forgetting(
        s.lake_uri(),
        target,
        participant,
        s.redshift_schema,
        reason=reason,
        include_releases=include_releases,
        lock_timeout_s=wait,
        valid_day_minutes=s.valid_day_minutes(),
    )
    lake_rows, wh_rows = sum(report.lake_rows.values()), sum(report.warehouse_rows.values())
    console.print(
        f"Forgotten (recorded as {report.participant_hash[:12]}…): {lake_rows} lake rows in "
        f"{len(report.lake_rows)} tables, {wh_rows} warehouse rows in {len(report.warehouse_rows)} tables; "
        f"{report.snapshots_expired} snapshots expired, {report.files_deleted} lake files deleted, the staging of "
        f"{report.staging_removed} ended runs and {report.quarantine_removed} quarantined files removed. Later "
        "deliveries of this participant's files are skipped and counted (files_forgotten)."
    )
    if report.releases_rewritten:
        console.print(f"Releases rewritten without the participant: {', '.join(report.releases_rewritten)}.")
    if report.releases_kept:
        console.print(
            f"[yellow]Releases kept as they are, still holding the participant:[/yellow] "
            f"{', '.join(report.releases_kept)} (`forget --include-releases` rewrites them)."
        )


@app.command()
@_guard
def validate(
    source: Annotated[str, typer.Argument(help="Folder or URI to validate")],
    workers: Annotated[int, typer.Option(help="Transform processes (0 = one per core)")] = 0,
    worst: Annotated[int, typer.Option(help="How many of the worst files to list")] = 10,
    as_json: JsonOpt = False,
) -> None:
    """Dry run: read and validate SOURCE, print per-rule counts and the worst files; load nothing."""
    from .validate import validate as run_validation

    s = _load_settings()
    preflight.check_source(source, "SOURCE (the argument of validate)")
    progress = _progress("validating", as_json)
    task = progress.add_task("files", total=None)
    with progress:
        report = run_validation(
            source,
            limits=s.limits(),
            workers=workers or s.fitbit_workers,
            worst=worst,
            on_start=lambda n: progress.update(task, total=n),
            on_progress=lambda n: progress.advance(task, n),
        )
    if as_json:
        print(json.dumps(report.as_dict(), indent=2, default=str))
        return
    console.print(
        f"[bold]{report.source}[/bold]: {report.files} files, {report.files_rejected} rejected; "
        f"rows read {report.rows_read}, valid {report.rows_valid}, rejected {report.rows_rejected}, "
        f"duplicates {report.rows_duplicate}"
    )
    if report.rules:
        table = Table(title="Findings by rule", title_justify="left", box=box.SIMPLE_HEAD)
        for col in ("rule", "severity", "count", "meaning"):
            table.add_column(col, justify="right" if col == "count" else "left")
        from .rules import RULES

        for rule_id, n in report.rules.items():
            r = RULES[rule_id]
            table.add_row(rule_id, r.severity, str(n), r.message)
        console.print(table)
    if report.worst_files:
        table = Table(title="Worst files", title_justify="left", box=box.SIMPLE_HEAD)
        for col in ("file", "status", "rule", "rows rejected"):
            table.add_column(col, overflow="fold")
        for f in report.worst_files:
            table.add_row(f["source_file"], f["status"], f["rule_id"] or "", str(f["rows_rejected"]))
        console.print(table)
    if not report.rules:
        console.print("[green]No rule was broken.[/green]")


@app.command()
@_guard
def report(
    out: Annotated[str, typer.Option("--out", help="HTML file (or s3:// URI) to write")] = "fitbit-report.html",
    start: Annotated[str | None, typer.Option("--from", help="First day, YYYY-MM-DD (default: 7 days to --to)")] = None,
    end: Annotated[str | None, typer.Option("--to", help="Last day, YYYY-MM-DD (default: latest data)")] = None,
    warehouse: WarehouseOpt = None,
    schema: SchemaOpt = None,
    release: Annotated[str | None, typer.Option("--release", help="Report on a release's frozen data")] = None,
    lake: LakeOpt = None,
    notify: Annotated[bool, typer.Option(help="Alert the notification channels about silent participants")] = True,
) -> None:
    """Write the compliance report: wear heat map, valid days, silent participants, rejects, runs."""
    from . import report as reporting
    from .releases import release_warehouse
    from .warehouse import open_warehouse

    s = _settings(None, lake, warehouse, schema)
    target = _existing_warehouse(s, warehouse)
    if release:
        opened = release_warehouse(s.lake_uri(), target, release, s.redshift_schema)
    else:
        opened = open_warehouse(target, s.redshift_schema)
    with opened as wh:
        if not release:
            wh.ensure_schema()
        last = dt.date.fromisoformat(end) if end else reporting.latest_data_day(wh)
        if last is None:
            err.print("The warehouse holds no data yet: run `fitbit-pipeline run` first.")
            raise typer.Exit(1)
        first = dt.date.fromisoformat(start) if start else last - dt.timedelta(days=6)
        data = reporting.build(
            wh,
            first,
            last,
            rules=reporting.SilentRules(s.fitbit_silent_after_days, s.fitbit_wear_drop_ratio),
            release=release,
        )
    try:
        reporting.write(data, out)
    except OSError as exc:
        raise ConfigError("--out", f"cannot write {mask_url(out)}: {exc.strerror or type(exc).__name__}") from None
    console.print(f"Wrote {out}: {len(data.participants)} participants, {first} to {last}")
    if data.silent:
        console.print(
            f"[yellow]{len(data.silent)} participant(s) to contact:[/yellow] "
            + ", ".join(escape(p.participant_id) for p in data.silent)
        )
        alert = reporting.silent_alert(data)
        if notify and alert and not release:  # a release is history: nobody to contact about it
            Notifier(s.notify_config()).send(alert)


@app.command("sample-data")
@_guard
def sample_data(
    out: Annotated[str, typer.Argument(help="Folder to write into")],
    participants: Annotated[int, typer.Option(help="Number of participants")] = 3,
    days: Annotated[int, typer.Option(help="Number of days")] = 7,
    start: Annotated[str, typer.Option(help="First day, YYYY-MM-DD")] = "2024-03-04",
    hr_seconds: Annotated[bool, typer.Option("--hr-seconds", help="Heart rate at second detail")] = False,
    layout: Annotated[
        str,
        typer.Option(
            help="by-participant-and-date | mydatahelps | careevolution | google-health | fitabase | account-export"
        ),
    ] = "by-participant-and-date",
    zone: Annotated[
        str, typer.Option(help="account-export: the participants' IANA time zone (read back with it)")
    ] = "America/Chicago",
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same bytes)")] = 42,
) -> None:
    """Write a realistic synthetic dataset whose daily totals agree with the intraday rows."""
    from .sample_data import (
        ACCOUNT_EXPORT,
        ALL_LAYOUTS,
        FITABASE,
        GOOGLE_HEALTH,
        generate,
        generate_account_export,
        generate_fitabase,
        generate_google_health,
    )

    if layout not in ALL_LAYOUTS:
        err.print(f"unknown layout {layout!r}; choose one of {', '.join(ALL_LAYOUTS)}")
        raise typer.Exit(2)
    if layout == GOOGLE_HEALTH:
        files = generate_google_health(
            out,
            participants=participants,
            days=days,
            start=dt.date.fromisoformat(start),
            seed=seed,
            hr_step=1 if hr_seconds else 60,
        )
        console.print(f"Wrote {len(files)} Google Health API v4 documents to {out}")
        return
    if layout == FITABASE:
        first = dt.date.fromisoformat(start)
        folder, _ = generate_fitabase(out, participants=participants, days=days, start=first, seed=seed)
        console.print(f"Wrote a Fitabase export of {participants} participants over {days} days to {folder}")
        return
    if layout == ACCOUNT_EXPORT:
        first = dt.date.fromisoformat(start)
        folders, _ = generate_account_export(
            out, participants=participants, days=days, start=first, zone=zone, seed=seed
        )
        console.print(
            f"Wrote the Fitbit account exports of {len(folders)} participants over {days} days to {out}; "
            f"their times are UTC: run with FITBIT_DEFAULT_TIMEZONE={zone}"
        )
        return
    truth = generate(
        out,
        participants=participants,
        days=days,
        start=dt.date.fromisoformat(start),
        hr_seconds=hr_seconds,
        layout=layout,
        seed=seed,
    )
    rows = sum(d.intraday_rows for d in truth.days)
    console.print(
        f"Wrote {len(truth.files)} files ({len(truth.days)} participant-day-activities, {rows} intraday rows) to {out}"
    )


@app.command("collect")
@_guard
def collect(
    participants: Annotated[
        str | None,
        typer.Option(
            "--participants", help="CSV participant_id,health_user_id,refresh_token [GOOGLE_HEALTH_PARTICIPANTS]"
        ),
    ] = None,
    out: Annotated[str | None, typer.Option("--out", help="Folder or URI to write into [FITBIT_SOURCE]")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="First civil day, YYYY-MM-DD (default: the high-water day)")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Last civil day, inclusive (default: today, UTC)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Also print one JSON line per participant on stdout")] = False,
) -> None:
    """Fetch Google Health API v4 data points into <out>/google-health/<participant>/<data-type>/<day>.json.

    Exit 0 when every participant was collected or needs consent again, 1 when any failed, 2 on a
    configuration error (settings, participants file, token references).
    """
    from .google_health import collect as gh

    s = _load_settings()
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as bar:
        task = bar.add_task("collect", total=None)
        results = gh.run(
            s,
            participants=participants,
            out=out,
            since=since,
            until=until,
            on_start=lambda total: bar.update(task, total=total),
            progress=lambda pid, dtype: bar.update(task, advance=1, description=f"{escape(pid)} {dtype}"),
        )
    table = Table(title="Google Health collect", box=box.SIMPLE)
    for col in ("participant", "status", "days written", "unchanged", "points", "requests", "retries", "error"):
        table.add_column(col, justify="right" if col not in ("participant", "status", "error") else "left")
    style = {"ok": "green", "consent_needed": "yellow", "failed": "red"}
    for r in results:
        table.add_row(
            escape(r.participant_id),
            f"[{style[r.status]}]{r.status}[/]",
            str(r.days_written),
            str(r.days_unchanged),
            str(r.points),
            str(r.requests),
            str(r.retries),
            escape(r.error or ""),
        )
    err.print(table)
    if as_json:
        for r in results:
            print(json.dumps(r.as_dict(), separators=(",", ":")))
    code = gh.exit_status(results)
    if code:
        raise typer.Exit(code)


release_app = typer.Typer(no_args_is_help=True, help="Frozen data releases: the data of a paper, readable years later.")
app.add_typer(release_app, name="release")
ReleaseName = Annotated[str, typer.Argument(help="The release's name (letters, digits, '.', '_', '-')")]


@release_app.command("create")
@_guard
def release_create(
    name: ReleaseName,
    note: Annotated[str | None, typer.Option(help="What the release is for (kept with it)")] = None,
    lake: LakeOpt = None,
    warehouse: WarehouseOpt = None,
    schema: SchemaOpt = None,
    wait: Annotated[float, typer.Option(help="Seconds to wait for a run holding the lake")] = 0.0,
    as_json: JsonOpt = False,
) -> None:
    """Freeze the current state of every table: an Iceberg tag per data table, the warehouse's quality tables
    copied, rows and a content checksum per table recorded in pipeline_releases. Later runs leave it as it is."""
    from .releases import create

    s = _settings(None, lake, warehouse, schema)
    target = _existing_warehouse(s, warehouse)
    release = create(
        s.lake_uri(),
        target,
        name,
        s.redshift_schema,
        note=note,
        lock_timeout_s=wait,
        valid_day_minutes=s.valid_day_minutes(),
    )
    if as_json:
        print(json.dumps(release.as_dict(), indent=2, default=str))
        return
    _print_release(release)
    console.print(
        f"Release {escape(name)} created: {release.rows} rows in {len(release.tables)} tables. Read it with "
        f"`fitbit-pipeline export --release {escape(name)} --to DIR` or `report --release {escape(name)}`."
    )


def _print_release(release: Any) -> None:  # noqa: ANN401 - a releases.Release (imported lazily)
    title = f"Release {release.name} ({str(release.created_at)[:19]} UTC, pipeline {release.pipeline_version})"
    table = Table(title=escape(title), title_justify="left", box=box.SIMPLE_HEAD)
    for label in ("table", "rows", "snapshot", "checksum"):
        table.add_column(label, justify="right" if label == "rows" else "left", no_wrap=True)
    for entry in release.tables.values():
        snapshot = str(entry.snapshot_id) if entry.snapshot_id is not None else "frozen copy"
        table.add_row(entry.table_name, str(entry.row_count), snapshot, entry.checksum)
    console.print(table)
    if release.note:
        console.print(f"note: {escape(release.note)}")
    if release.rewritten:
        console.print(f"[yellow]rewritten since:[/yellow] {escape(release.rewritten)}")


@release_app.command("list")
@_guard
def release_list(warehouse: WarehouseOpt = None, schema: SchemaOpt = None, as_json: JsonOpt = False) -> None:
    """Every release: name, time, rows, note."""
    from .releases import releases
    from .warehouse import open_warehouse

    s = _settings(None, None, warehouse, schema)
    with open_warehouse(_existing_warehouse(s, warehouse), s.redshift_schema) as wh:
        wh.ensure_schema()
        found = releases(wh)
    if as_json:
        print(json.dumps([r.as_dict() for r in found], indent=2, default=str))
        return
    if not found:
        console.print("No release yet: `fitbit-pipeline release create NAME` makes one.")
        return
    table = Table(title="Releases", title_justify="left", box=box.SIMPLE_HEAD)
    for label in ("name", "created (UTC)", "rows", "pipeline", "note"):
        table.add_column(label, justify="right" if label == "rows" else "left")
    for r in found:
        note = (r.note or "") + (" [rewritten]" if r.rewritten else "")
        table.add_row(escape(r.name), str(r.created_at)[:19], str(r.rows), r.pipeline_version, escape(note))
    console.print(table)


@release_app.command("show")
@_guard
def release_show(
    name: ReleaseName, warehouse: WarehouseOpt = None, schema: SchemaOpt = None, as_json: JsonOpt = False
) -> None:
    """One release: per table its snapshot, rows and checksum."""
    from .releases import get
    from .warehouse import open_warehouse

    s = _settings(None, None, warehouse, schema)
    with open_warehouse(_existing_warehouse(s, warehouse), s.redshift_schema) as wh:
        wh.ensure_schema()
        release = get(wh, name)
    if as_json:
        print(json.dumps(release.as_dict(), indent=2, default=str))
        return
    _print_release(release)


@app.command()
@_guard
def export(
    release: Annotated[str, typer.Option("--release", help="The release to export (`release list`)")],
    to: Annotated[str, typer.Option("--to", help="A new or empty folder, or an s3:// prefix")],
    fmt: Annotated[str, typer.Option("--format", help="parquet or csv")] = "parquet",
    lake: LakeOpt = None,
    warehouse: WarehouseOpt = None,
    schema: SchemaOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a release for a collaborator: one file per table and manifest.json (tables, rows, checksums, file
    SHA-256, columns, the pipeline version)."""
    from .release_export import export as exporting

    s = _settings(None, lake, warehouse, schema)
    manifest = exporting(s.lake_uri(), _existing_warehouse(s, warehouse), release, to, fmt.lower(), s.redshift_schema)
    if as_json:
        print(json.dumps(manifest, indent=2))
        return
    rows = sum(t["rows"] for t in manifest["tables"].values())
    console.print(f"Exported release {escape(release)} to {mask_url(to)}: {len(manifest['tables'])} files, {rows} rows")


glue_app = typer.Typer(no_args_is_help=True, help="AWS Glue: the Spark transform as one Glue job per activity.")
app.add_typer(glue_app, name="glue")


@glue_app.command("deploy")
@_guard
def glue_deploy(
    bucket: Annotated[
        str | None, typer.Option("--bucket", help="S3 bucket for the script and the wheel [GLUE_SCRIPTS_BUCKET]")
    ] = None,
    role: Annotated[str | None, typer.Option("--role-arn", help="IAM role of the jobs [FITBIT_GLUE_ROLE_ARN]")] = None,
    wheel: Annotated[
        str | None, typer.Option("--wheel", help="A prebuilt package wheel (default: build one from this source tree)")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Build and upload the package wheel and glue_job.py, then create or update the six Glue jobs.

    Jobs: {GLUE_JOB_PREFIX}_{activity}_processor, Glue 5.0, in AWS_REGION; the script goes to
    s3://$GLUE_SCRIPTS_BUCKET/fitbit_pipeline/glue_job.py, where the DAG's Glue mode expects it.
    """
    import pathlib

    from . import glue_deploy as gd

    s = _load_settings()
    overrides = {k: v for k, v in {"glue_scripts_bucket": bucket, "fitbit_glue_role_arn": role}.items() if v}
    s = s.model_copy(update=overrides)
    if wheel and not pathlib.Path(wheel).is_file():
        raise ConfigError("--wheel", f"no wheel at {wheel}")
    try:
        gd.check(s)
    except gd.DeployError as exc:
        _error_line("configuration error", str(exc))
        raise typer.Exit(EXIT_CONFIG) from None
    assert s.glue_scripts_bucket is not None
    preflight.check_bucket(s.glue_scripts_bucket, "--bucket" if bucket else "GLUE_SCRIPTS_BUCKET")
    done = gd.deploy(s, wheel=pathlib.Path(wheel) if wheel else None)  # AWS or build errors: _guard
    if as_json:
        print(json.dumps(done.as_dict(), indent=2))
        return
    console.print(f"script  {done.script_uri}\nwheel   {done.wheel_uri}")
    for name, what in done.jobs.items():
        console.print(f"  {name}: {what}")


if __name__ == "__main__":  # pragma: no cover
    app()
