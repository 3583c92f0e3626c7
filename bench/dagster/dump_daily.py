"""Prints, as JSON, the `date` column of each daily partition of
`downstream_asset` that Dagster's filesystem I/O manager stored (a pickled
DataFrame at <storage>/downstream_asset/<day>), for bench/dagster_compare.py.

    python dump_daily.py $DAGSTER_HOME/storage 2022-01-01 2022-01-02
"""
import json
import pickle
import sys
from pathlib import Path


def main():
    storage = Path(sys.argv[1])
    out = {}
    for day in sys.argv[2:]:
        with open(storage / "downstream_asset" / day, "rb") as f:
            df = pickle.load(f)
        out[day] = [str(k) for k in df["date"]]
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
