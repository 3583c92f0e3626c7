"""The seed example as a Dagster code location, for bench/dagster_compare.py.

It mirrors dg's bundled `upstream_asset` / `downstream_asset` (defs/assets.toml),
written the way the I/O manager guide of Dagster 1.13 writes it: an hourly
asset returning a one-row DataFrame with its partition key, and a daily asset
that receives the day's 24 hourly DataFrames as a `dict[str, pd.DataFrame]`
(the default filesystem I/O manager loads every mapped upstream partition)
and concatenates them in order.

Nothing is configured beyond the definitions: runs use Dagster's defaults
(the filesystem I/O manager under $DAGSTER_HOME/storage, and the default
executor).
"""
from datetime import datetime

import pandas as pd

import dagster as dg

START = datetime(2022, 1, 1)

hourly = dg.HourlyPartitionsDefinition(start_date=f"{START:%Y-%m-%d-%H:%M}")
daily = dg.DailyPartitionsDefinition(start_date=f"{START:%Y-%m-%d}")


@dg.asset(partitions_def=hourly)
def upstream_asset(context: dg.AssetExecutionContext) -> pd.DataFrame:
    """One row per hour: the hour's partition key."""
    return pd.DataFrame({"date": [context.partition_key]})


@dg.asset(partitions_def=daily)
def downstream_asset(upstream_asset: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The day's 24 hourly rows, in order."""
    return pd.concat(list(upstream_asset.values()))


defs = dg.Definitions(assets=[upstream_asset, downstream_asset])
