"""Materializes the seed example through Dagster's in-process Python API, for
bench/dagster_compare.py: one `dagster.materialize` call per partition, all in
this one process. For each day, the 24 hourly partitions of `upstream_asset`,
then the day's partition of `downstream_asset` (which loads the 24 stored
hours through the filesystem I/O manager).

    DAGSTER_HOME=/tmp/x python api_run.py 2022-01-01 7

Runs against the persistent instance in $DAGSTER_HOME, as the CLI does, so
that each call's outputs are stored where the next call loads them. Prints
one JSON object on stdout: the time spent importing (dagster, pandas and the
definitions), the time for the runs after that, and each call's time.
"""
import time

T0 = time.perf_counter()

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from datetime import date, timedelta  # noqa: E402

import pandas  # noqa: E402,F401

import dagster as dg  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import seed_defs  # noqa: E402

T1 = time.perf_counter()


def main():
    start = date.fromisoformat(sys.argv[1])
    n_days = int(sys.argv[2])
    instance = dg.DagsterInstance.get()
    hourly_calls, daily_calls = [], []
    for d in range(n_days):
        day = start + timedelta(days=d)
        for h in range(24):
            key = f"{day:%Y-%m-%d}-{h:02}:00"
            t = time.perf_counter()
            dg.materialize([seed_defs.upstream_asset], partition_key=key, instance=instance)
            hourly_calls.append(time.perf_counter() - t)
        t = time.perf_counter()
        result = dg.materialize(
            [*seed_defs.upstream_asset.to_source_assets(), seed_defs.downstream_asset],
            partition_key=f"{day:%Y-%m-%d}",
            instance=instance,
        )
        daily_calls.append(time.perf_counter() - t)
        rows = result.output_for_node("downstream_asset")
        assert len(rows) == 24, f"{day}: {len(rows)} rows"
    t2 = time.perf_counter()
    instance.dispose()
    json.dump({"import_s": T1 - T0, "runs_s": t2 - T1, "hourly_calls_s": hourly_calls,
               "daily_calls_s": daily_calls}, sys.stdout)


if __name__ == "__main__":
    main()
