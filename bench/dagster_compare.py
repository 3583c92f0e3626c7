#!/usr/bin/env python3
"""dg against Dagster 1.13.27 on the seed example (issue 9).

The same work on both sides: an hourly `upstream_asset` (one row: the hour's
partition key) feeding a daily `downstream_asset` that concatenates its 24
hours, for 1 day and for 7 days from 2022-01-01. Measured, as wall time:

  (a) Dagster's CLI as its users run it: `dagster asset materialize`, one call
      per partition (24 hourly calls, then the daily one, for each day), with
      DAGSTER_HOME in a temporary folder;
  (b) Dagster's in-process Python API: `dagster.materialize(...)` once per
      partition in one Python process, with and without the imports;
  (c) dg: `dg materialize --partition-range A...B --select '+downstream_asset'`
      (with the default --jobs, and with --jobs 1), and one `dg materialize`
      call per partition, like (a).

Then it checks that both sides stored the same daily rows (the same 24 keys in
the same order for every day) and fails loudly if not, and prints a table of
medians and ratios.

    python3 bench/dagster_compare.py              # 1 and 7 days
    python3 bench/dagster_compare.py --quick      # one repeat of everything
    python3 bench/dagster_compare.py --cli-7d full

The driver uses the Python standard library only. Dagster runs in a scratch
virtualenv outside the repository: $DG_BENCH_VENV, default /tmp/dg-bench-venv,
created with `pip install dagster==1.13.27 pandas` when it lacks them. The
Dagster project is bench/dagster/ (copied to a temporary folder, like dg's
defs/, so that nothing is written into the repository at run time; the release
build in target/ excepted).

Dagster's CLI costs seconds per call, so 7 days (175 calls) takes over ten
minutes. By default (`--cli-7d auto`) the 7-day CLI figure is measured only
when 7 times the 1-day median fits in --cli-budget seconds (default 600);
otherwise it is extrapolated from the 1-day per-call times, and the output
says so.
"""
import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DG = ROOT / "target" / "release" / "dg"
DAGSTER_PROJECT = ROOT / "bench" / "dagster"
DAGSTER_VERSION = "1.13.27"
VENV = Path(os.environ.get("DG_BENCH_VENV", "/tmp/dg-bench-venv"))
START = date(2022, 1, 1)
TARGET_API, TARGET_CLI = 50, 500  # issue 9: dg at least this many times faster


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def fail(msg):
    sys.exit(f"dagster_compare: FAILED: {msg}")


# ---------------------------------------------------------------- setup

def venv_versions(py: Path):
    """(dagster, pandas) versions in the venv, or None when either is missing."""
    if not py.exists():
        return None
    p = subprocess.run([py, "-c", "import dagster, pandas; print(dagster.__version__, pandas.__version__)"],
                       capture_output=True, text=True)
    return tuple(p.stdout.split()) if p.returncode == 0 else None


def ensure_venv():
    py = VENV / "bin" / "python"
    have = venv_versions(py)
    if have and have[0] == DAGSTER_VERSION:
        return py, have
    log(f"setting up {VENV}: pip install dagster=={DAGSTER_VERSION} pandas (found {have})")
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
    subprocess.run([py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    f"dagster=={DAGSTER_VERSION}", "pandas"], check=True)
    have = venv_versions(py)
    if not have or have[0] != DAGSTER_VERSION:
        fail(f"{VENV} has {have}, not dagster {DAGSTER_VERSION} with pandas")
    return py, have


def build():
    log("cargo build --release")
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)


def days(n):
    return [f"{START + timedelta(days=d):%Y-%m-%d}" for d in range(n)]


def hours(day):
    return [f"{day}-{h:02}:00" for h in range(24)]


def machine():
    mem = "?"
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    cpu = platform.processor() or "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    git = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True)
    return {"nproc": os.cpu_count(), "memory": mem, "cpu": cpu, "os": platform.platform(), "rustc": rustc,
            "commit": git.stdout.strip() or "?"}


def loadavg():
    return "%.2f %.2f %.2f" % os.getloadavg()


# ---------------------------------------------------------------- running

BASE_ENV = dict(os.environ, NO_COLOR="1", PYTHONDONTWRITEBYTECODE="1")
for k in ("DAGSTER_HOME", "DG_NOW"):
    BASE_ENV.pop(k, None)


def cpu_now():
    """CPU seconds (user + system) of every child process waited for so far,
    their own children included: less sensitive to other load than wall time."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def measured(fn, *a, **kw):
    """Runs fn; returns (wall seconds, CPU seconds of the processes it ran, fn's result)."""
    c0, t0 = cpu_now(), time.perf_counter()
    out = fn(*a, **kw)
    return time.perf_counter() - t0, cpu_now() - c0, out


def call(argv, cwd, env=None):
    """Runs argv; returns its wall time in seconds. Exits loudly on failure."""
    e = dict(BASE_ENV, **(env or {}))
    t0 = time.perf_counter()
    p = subprocess.run([str(a) for a in argv], cwd=cwd, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    secs = time.perf_counter() - t0
    if p.returncode != 0:
        fail(f"{' '.join(map(str, argv))} exited {p.returncode}:\n{p.stderr.decode()[-3000:]}")
    return secs, p.stdout


class Sides:
    """The scratch projects, one per side, in a temporary folder."""

    def __init__(self, tmp: Path, py: Path):
        self.tmp = tmp
        self.py = py
        self.dagster_bin = py.parent / "dagster"
        self.dg_dir = tmp / "dg"
        shutil.copytree(ROOT / "defs", self.dg_dir / "defs")
        self.code = tmp / "dagster-code"
        shutil.copytree(DAGSTER_PROJECT, self.code, ignore=shutil.ignore_patterns("__pycache__"))

    # Dagster
    def fresh_home(self, name):
        home = self.tmp / name
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir()
        shutil.copy(self.code / "dagster.yaml", home / "dagster.yaml")
        return home

    def dagster_cli(self, n_days):
        """One `dagster asset materialize` per partition. Returns (total, hourly calls, daily calls, home)."""
        home = self.fresh_home("home-cli")
        env = {"DAGSTER_HOME": str(home)}
        hourly, daily = [], []
        t0 = time.perf_counter()
        for day in days(n_days):
            for key in hours(day):
                s, _ = call([self.dagster_bin, "asset", "materialize", "-f", "seed_defs.py",
                             "--select", "upstream_asset", "--partition", key], self.code, env)
                hourly.append(s)
            s, _ = call([self.dagster_bin, "asset", "materialize", "-f", "seed_defs.py",
                         "--select", "downstream_asset", "--partition", day], self.code, env)
            daily.append(s)
        return time.perf_counter() - t0, hourly, daily, home

    def dagster_api(self, n_days):
        """One Python process, one dagster.materialize per partition. Returns (total, report, home)."""
        home = self.fresh_home("home-api")
        s, out = call([self.py, "api_run.py", START.isoformat(), n_days], self.code, {"DAGSTER_HOME": str(home)})
        return s, json.loads(out), home

    def dagster_daily_rows(self, home, n_days):
        _, out = call([self.py, "dump_daily.py", home / "storage", *days(n_days)], self.code)
        return json.loads(out)

    # dg
    def dg_fresh(self):
        shutil.rmtree(self.dg_dir / ".dg", ignore_errors=True)

    def dg_range(self, n_days, jobs=None):
        self.dg_fresh()
        d = days(n_days)
        argv = [DG, "materialize", "--quiet", "--select", "+downstream_asset", "--partition-range", f"{d[0]}...{d[-1]}"]
        if jobs:
            argv += ["--jobs", jobs]
        return call(argv, self.dg_dir)[0]

    def dg_per_partition(self, n_days):
        self.dg_fresh()
        t0 = time.perf_counter()
        calls = []
        for day in days(n_days):
            for key in hours(day):
                calls.append(call([DG, "materialize", "--quiet", "--select", "upstream_asset", "--partition", key],
                                  self.dg_dir)[0])
            calls.append(call([DG, "materialize", "--quiet", "--select", "downstream_asset", "--partition", day],
                              self.dg_dir)[0])
        return time.perf_counter() - t0, calls

    def dg_daily_rows(self, n_days):
        out = {}
        for day in days(n_days):
            path = self.dg_dir / ".dg" / "storage" / "downstream_asset" / f"{day}.csv"
            if not path.exists():
                fail(f"dg stored no {path}")
            lines = path.read_text().splitlines()
            if not lines or lines[0] != "date":
                fail(f"{path}: expected a `date` header, got {lines[:1]}")
            out[day] = lines[1:]
        return out

    # Check
    def check_same(self, label, dg_rows, dagster_rows, n_days):
        for day in days(n_days):
            want = hours(day)
            a, b = dg_rows.get(day), dagster_rows.get(day)
            if a != want:
                fail(f"{label}: dg's {day} rows are not the day's 24 hours in order:\n  {a}")
            if b != want:
                fail(f"{label}: Dagster's {day} rows are not the day's 24 hours in order:\n  {b}")
        log(f"  check {label}: {n_days} day(s), dg and Dagster stored the same 24 keys per day, in order")


# ---------------------------------------------------------------- main

def median(xs):
    return statistics.median(xs)


def fmt(s):
    if s is None:
        return "-"
    if s >= 10:
        return f"{s:.1f} s"
    if s >= 1:
        return f"{s:.2f} s"
    return f"{s * 1000:.1f} ms"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="repeats of the dg runs (default 5)")
    ap.add_argument("--repeat-api", type=int, default=3, help="repeats of the Dagster API runs (default 3)")
    ap.add_argument("--repeat-cli", type=int, default=3, help="repeats of the 1-day Dagster CLI run (default 3)")
    ap.add_argument("--cli-7d", choices=["auto", "full", "extrapolate"], default="auto",
                    help="measure the 7-day Dagster CLI run, or extrapolate it from 1 day (default: auto)")
    ap.add_argument("--cli-budget", type=float, default=600,
                    help="seconds the 7-day CLI run may take for `auto` to measure it (default 600)")
    ap.add_argument("--quick", action="store_true", help="one repeat of everything")
    ap.add_argument("--json", action="store_true", help="also print the figures as JSON on stdout")
    args = ap.parse_args()
    if args.quick:
        args.repeat = args.repeat_api = args.repeat_cli = 1

    info = machine()
    load_before = loadavg()
    py, (dagster_v, pandas_v) = ensure_venv()
    info["python"] = subprocess.run([py, "--version"], capture_output=True, text=True).stdout.strip()
    info["dagster"], info["pandas"] = dagster_v, pandas_v
    build()
    log(f"load average before: {load_before}")

    res = {}  # (label, n_days) -> median wall seconds
    cpu = {}  # (label, n_days) -> median CPU seconds (user + system, all processes)
    notes = []

    def repeat(key, n, times, fn, *a, **kw):
        """Runs fn `times` times; records the medians of the wall time it returns
        (the first item of its result) and of the CPU time; returns the results."""
        runs = [measured(fn, *a, **kw) for _ in range(times)]
        results = [r[2] for r in runs]
        res[(key, n)] = median([r[0] if isinstance(r, tuple) else r for r in results])
        cpu[(key, n)] = median([r[1] for r in runs])
        return results

    with tempfile.TemporaryDirectory(prefix="dg-dagster-compare-") as tmp:
        sides = Sides(Path(tmp), py)
        for n in (1, 7):
            log(f"--- {n} day(s)")
            # (c) dg
            repeat("dg_range", n, args.repeat, sides.dg_range, n)
            repeat("dg_range_j1", n, args.repeat, sides.dg_range, n, jobs=1)
            range_rows = sides.dg_daily_rows(n)
            runs = repeat("dg_calls", n, args.repeat if n == 1 else min(3, args.repeat), sides.dg_per_partition, n)
            res[("dg_per_call", n)] = median([c for r in runs for c in r[1]])
            calls_rows = sides.dg_daily_rows(n)
            if calls_rows != range_rows:
                fail(f"dg stored different daily rows with one call per partition than with a range ({n} days)")
            log(f"  dg: range {fmt(res[('dg_range', n)])}, --jobs 1 {fmt(res[('dg_range_j1', n)])}, "
                f"per-partition calls {fmt(res[('dg_calls', n)])}")

            # (b) Dagster API
            api = repeat("api", n, args.repeat_api, sides.dagster_api, n)
            home = api[-1][2]
            sides.check_same(f"Dagster API, {n} day(s)", range_rows, sides.dagster_daily_rows(home, n), n)
            reports = [a[1] for a in api]
            res[("api_runs", n)] = median([r["runs_s"] for r in reports])
            res[("api_import", n)] = median([r["import_s"] for r in reports])
            res[("api_per_call", n)] = median([c for r in reports for c in r["hourly_calls_s"] + r["daily_calls_s"]])
            log(f"  Dagster API: {fmt(res[('api', n)])} (runs only {fmt(res[('api_runs', n)])})")

            # (a) Dagster CLI
            if n == 1:
                log(f"  Dagster CLI, 1 day: {args.repeat_cli} x 25 calls")
                cli = repeat("cli", 1, args.repeat_cli, sides.dagster_cli, 1)
                sides.check_same("Dagster CLI, 1 day", range_rows, sides.dagster_daily_rows(cli[-1][3], 1), 1)
                res[("cli_hourly_call", 1)] = median([x for c in cli for x in c[1]])
                res[("cli_daily_call", 1)] = median([x for c in cli for x in c[2]])
                res[("cli_per_call", 1)] = median([x for c in cli for x in c[1] + c[2]])
                log("  Dagster CLI, 1 day, each repeat: " + ", ".join(fmt(c[0]) for c in cli))
            else:
                # 175 calls at the 1-day run's time per call: n times the 1-day median.
                projected = n * res[("cli", 1)]
                measure = args.cli_7d == "full" or (args.cli_7d == "auto" and projected <= args.cli_budget)
                if measure:
                    log(f"  Dagster CLI, {n} days, one repeat ({n * 25} calls, about {projected:.0f} s)")
                    cli = repeat("cli", n, 1, sides.dagster_cli, n)
                    sides.check_same(f"Dagster CLI, {n} days", range_rows, sides.dagster_daily_rows(cli[0][3], n), n)
                    res[("cli_per_call", n)] = median(cli[0][1] + cli[0][2])
                else:
                    res[("cli", n)] = projected
                    cpu[("cli", n)] = n * cpu[("cli", 1)]
                    res[("cli_per_call", n)] = res[("cli_per_call", 1)]
                    res[("cli_extrapolated", n)] = True
                    notes.append(f"Dagster CLI, {n} days: EXTRAPOLATED, not measured: {n * 25} calls at the "
                                 f"1-day run's time per call, i.e. {n} x the 1-day median "
                                 f"({fmt(res[('cli', 1)])} wall, {fmt(cpu[('cli', 1)])} CPU for 25 calls; "
                                 f"per call: {fmt(res[('cli_hourly_call', 1)])} median for an hourly "
                                 f"partition, {fmt(res[('cli_daily_call', 1)])} for a daily one). "
                                 f"Measuring would take about {projected:.0f} s (> --cli-budget "
                                 f"{args.cli_budget:.0f} s; --cli-7d full measures it)")
            log(f"  Dagster CLI: {fmt(res[('cli', n)])}" + (" (extrapolated)" if res.get(("cli_extrapolated", n)) else ""))
    load_after = loadavg()

    # ------------------------------------------------------------ report
    print()
    print(f"Machine: {info['nproc']} CPUs ({info['cpu']}), {info['memory']} RAM, {info['os']}")
    print(f"{info['python']}, dagster {info['dagster']}, pandas {info['pandas']}; {info['rustc']}, "
          f"dg at {info['commit']}")
    print(f"Load average (1/5/15 min): before {load_before}, after {load_after}")
    print(f"Repeats (medians): dg {args.repeat}, Dagster API {args.repeat_api}, Dagster CLI 1 day {args.repeat_cli}")
    print()
    rows = [
        ("dg materialize --partition-range, default --jobs", "dg_range"),
        ("dg materialize --partition-range, --jobs 1", "dg_range_j1"),
        ("dg, one call per partition (25 / 175 calls)", "dg_calls"),
        ("Dagster API, one process, incl. imports", "api"),
        ("Dagster API, excl. imports", "api_runs"),
        ("Dagster CLI, one call per partition (25 / 175)", "cli"),
        ("per call: dg materialize (one partition)", "dg_per_call"),
        ("per call: Dagster API dagster.materialize", "api_per_call"),
        ("per call: Dagster CLI asset materialize", "cli_per_call"),
        ("Dagster API imports (dagster, pandas, defs)", "api_import"),
    ]
    w = max(len(r[0]) for r in rows)
    print(f"{'median':{w}}  {'1 day':>10}  {'CPU':>10}  {'7 days':>10}  {'CPU':>10}")
    for label, key in rows:
        cells = []
        for n in (1, 7):
            star = "*" if key.startswith("cli") and res.get(("cli_extrapolated", n)) else ""
            cells += [fmt(res.get((key, n))) + star, fmt(cpu.get((key, n))) + (star if (key, n) in cpu else "")]
        print(f"{label:{w}}  " + "  ".join(f"{c:>10}" for c in cells))
    print("(wall time, and the CPU time, user + system, of every process the run started)")
    print()
    ratios = [
        ("Dagster CLI / dg range", "cli", "dg_range", TARGET_CLI),
        ("Dagster CLI / dg range --jobs 1", "cli", "dg_range_j1", None),
        ("Dagster CLI / dg one call per partition", "cli", "dg_calls", None),
        ("Dagster API incl. imports / dg range", "api", "dg_range", TARGET_API),
        ("Dagster API excl. imports / dg range", "api_runs", "dg_range", None),
        ("Dagster API incl. imports / dg range --jobs 1", "api", "dg_range_j1", None),
    ]
    w = max(len(r[0]) for r in ratios)
    print(f"{'ratio (how many times faster dg is)':{w}}  {'1 day':>10}  {'7 days':>10}  target")
    for label, a, b, target in ratios:
        cells = []
        for n in (1, 7):
            r = res[(a, n)] / res[(b, n)]
            ok = "" if target is None else (" ok" if r >= target else " MISS")
            cells.append(f"{r:.0f}x" + ("*" if a == "cli" and res.get(("cli_extrapolated", n)) else "") + ok)
        print(f"{label:{w}}  {cells[0]:>10}  {cells[1]:>10}  {'>= %dx' % target if target else ''}")
    print(f"{'CPU time ratios':{w}}")
    for label, a, b, _ in ratios:
        if (a, 1) not in cpu or (b, 1) not in cpu:
            continue
        cells = [(f"{cpu[(a, n)] / cpu[(b, n)]:.0f}x" if cpu[(b, n)] > 0 else "-")
                 + ("*" if a == "cli" and res.get(("cli_extrapolated", n)) else "") for n in (1, 7)]
        print(f"{'  ' + label:{w}}  {cells[0]:>10}  {cells[1]:>10}")
    for note in notes:
        print(f"\n* {note}")
    print("\nSame daily output: checked (dg .dg/storage/downstream_asset/<day>.csv against Dagster's pickled "
          "DataFrames: the day's 24 hourly keys, in order, every day).")
    if args.json:
        print(json.dumps({"machine": info, "load_before": load_before, "load_after": load_after,
                          "results": {f"{k}/{n}": v for (k, n), v in res.items()},
                          "cpu": {f"{k}/{n}": v for (k, n), v in cpu.items()}, "notes": notes}))


if __name__ == "__main__":
    main()
