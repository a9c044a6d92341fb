"""The derived tables of a merge stay within DuckDB's memory limit however many heart rows their days hold:
a re-delivery scattered over weeks bounds the heart scan by its first and last day only. The data tables
are views over Parquet files, as the embedded warehouse's are over the lake."""

from __future__ import annotations

import duckdb

from fitbit_pipeline import schema
from fitbit_pipeline.derived_sql import derived_statements
from fitbit_pipeline.sql import Names, placeholders
from fitbit_pipeline.warehouse.duckdb_backend import CONFIG, select_parquet

DAYS, ROWS_A_DAY = 60, 100_000  # 100 participants x 60 days x 1000 samples: far above the limit as a hash table
LIMIT = "24MB"  # the 6 M heart rows as a hash table far exceed it (the anti-join of an earlier version ran out)


def test_derived_tables_of_a_scattered_redelivery_stay_within_the_memory_limit(tmp_path) -> None:
    names = Names("rural")
    con = duckdb.connect(str(tmp_path / "w.duckdb"), config={**CONFIG, "memory_limit": LIMIT})
    con.execute(names.create_schema())
    for t in schema.ALL_TABLES:
        con.execute(names.create_table(t))
    heart = schema.BY_NAME["intraday_heart"]
    files = []
    for day in range(DAYS):  # one file a day, as the lake's partitions
        files.append(str(tmp_path / f"heart-{day}.parquet"))
        con.execute(
            "COPY (SELECT 'P' || (i % 100) AS participant_id, DATE '2024-01-01' + ? AS date, "
            "TIMESTAMP '2024-01-01' + INTERVAL (?) DAY + INTERVAL (i % 1000) MINUTE AS ts, 60.0 AS value, "
            "CAST(NULL AS TIMESTAMP) AS ts_utc, NULL AS tz_flag, "
            f"'f' AS source_file, 'r' AS run_id FROM range({ROWS_A_DAY}) t(i)) TO '{files[-1]}' (FORMAT parquet)",
            [day, day],
        )
    con.execute(f"DROP TABLE {names.q(heart.name)}")
    con.execute(f"CREATE VIEW {names.q(heart.name)} AS {select_parquet(heart, files)}")
    # the run re-delivered one day of each participant, spread over the 60 days; one day has steps, no heart
    winners = [(f"P{p}", f"2024-01-{1 + p % 28:02d}") for p in range(100)] + [("P-gone", "2024-02-29")]
    con.execute(
        'CREATE TEMPORARY TABLE "_fitbit_winners" (participant_id VARCHAR, activity VARCHAR, date DATE, '
        "source_file VARCHAR)"
    )
    for p, day in winners:
        for activity in ("heart", "steps"):
            con.execute('INSERT INTO "_fitbit_winners" VALUES (?, ?, ?, ?)', [p, activity, day, f"{p}-{activity}"])
            con.execute(
                f"INSERT INTO {names.q('pipeline_deliveries')} (participant_id, activity, date, source_file, "
                "delivery_rank, run_id) VALUES (?, ?, ?, ?, 1, 'r2')",
                [p, activity, day, f"{p}-{activity}"],
            )
        con.execute(
            f"INSERT INTO {names.q('daily_steps')} (participant_id, date, value, source_file, run_id) "
            "VALUES (?, ?, 100, 'f', 'r2')",
            [p, day],
        )
    days = (min(d for _, d in winners), max(d for _, d in winners))
    for sql, params in derived_statements(names, "r2", 600, days):
        con.execute(placeholders(sql, "?"), params)
    missing = con.execute(
        f"SELECT participant_id FROM {names.q('data_quality_findings')} WHERE rule_id = 'heart_missing_while_active'"
    ).fetchall()
    assert missing == [("P-gone",)]
    wear = con.execute(f"SELECT COUNT(*), SUM(heart_samples) FROM {names.q('daily_wear')}").fetchone()
    assert wear == (101, 100 * 1000)  # one day of each participant: 1000 samples; none for P-gone
