#!/usr/bin/env python3
"""dg benchmarks: builds a release binary, generates projects in a temp
folder, runs each command several times and prints a table of median wall
time and peak RSS. Standard library only.

    python3 bench/bench.py            # everything, then the Dagster comparison
    python3 bench/bench.py load plan  # some groups: load plan cron tick run pool range checks state io objstore sql dagster
                                      # (state includes `dg report`); `stress` (10,000 partitions, a 10,000-partition
                                      # input, a 100 MB-stdout step) is not in the default set
    DG_BIN=/path/to/dg python3 bench/bench.py plan   # another binary, no build (before/after)

Figures go to docs/performance.md by hand, with the machine they came from.
"""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DG = Path(os.environ["DG_BIN"]) if os.environ.get("DG_BIN") else ROOT / "target" / "release" / "dg"


def build():
    if os.environ.get("DG_BIN"):
        return
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)


def run(argv, cwd, repeat=5, env=None, setup=None, after=None):
    """Runs argv `repeat` times (calling `after()` after each); returns
    (median seconds, max RSS MiB)."""
    times, rss = [], 0
    e = dict(os.environ, NO_COLOR="1")
    if env:
        e.update(env)
    for _ in range(repeat):
        if setup:
            setup()
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, cwd=cwd, env=e, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(p.pid, 0)
        times.append(time.perf_counter() - t0)
        err = p.stderr.read().decode()
        p.stderr.close()
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            sys.exit(f"{' '.join(map(str, argv))} exited {code}:\n{err}")
        rss = max(rss, usage.ru_maxrss / 1024)
        if after:
            after()
    return statistics.median(times), rss


def write(path: Path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def gen_load(root: Path, assets=10_000, files=200):
    """10,000 assets over 200 files: partitioned ones, deps, inputs with mappings."""
    write(root / "defs" / "partitions.toml", '[partitions.daily]\ntype = "daily"\nstart = "2020-01-01"\n'
          '[partitions.hourly]\ntype = "hourly"\nstart = "2020-01-01-00:00"\n')
    per = assets // files
    n = 0
    for f in range(files):
        out = []
        for _ in range(per):
            out.append(f'[assets.a{n}]')
            out.append(f'partitions = "{"hourly" if n % 2 else "daily"}"')
            out.append('shell = "echo $DG_PARTITION_KEY > \\"$DG_OUTPUT\\""')
            out.append(f'group = "g{n % 17}"')
            out.append(f'tags = {{ team = "t{n % 5}" }}')
            if n >= 2:
                out.append(f'deps = ["a{n - 2}"]')
            if n >= 3 and n % 3 == 0:
                out.append(f'[assets.a{n}.ins.prev]')
                out.append(f'asset = "a{n - 3}"')
                out.append('mapping = { type = "all" }')
            out.append("")
            n += 1
        write(root / "defs" / f"f{f:03}.toml", "\n".join(out))


def gen_crons(root: Path):
    """Cron definitions over ten years, in New York: one enumerated (every 6
    hours) and one by arithmetic (every 30 minutes), each with a reader."""
    write(root / "defs" / "crons.toml", "\n".join([
        '[partitions.six]', 'type = "cron"', 'cron = "0 */6 * * *"', 'start = "2014-01-01-00:00"',
        'end = "2024-01-01-00:00"', 'timezone = "America/New_York"',
        '[partitions.half]', 'type = "cron"', 'cron = "*/30 * * * *"', 'start = "2014-01-01-00:00"',
        'end = "2024-01-01-00:00"', 'timezone = "America/New_York"',
        '[partitions.daily]', 'type = "daily"', 'start = "2014-01-02"', 'end = "2024-01-01"',
        'timezone = "America/New_York"',
        '[assets.six]', 'partitions = "six"', 'shell = "true"',
        '[assets.half]', 'partitions = "half"', 'shell = "true"',
        '[assets.day]', 'partitions = "daily"', 'deps = ["six", "half"]', 'shell = "true"', '']))


def gen_one_file(root: Path, assets=10_000):
    """10,000 assets in one file (line/column lookups must not rescan it)."""
    gen_load(root, assets=assets, files=1)


def gen_chain(root: Path):
    """A chain of 10 hourly assets over 10 years with a daily rollup."""
    out = ['[partitions.hourly]', 'type = "hourly"', 'start = "2014-01-01-00:00"', 'end = "2024-01-01-00:00"',
           '[partitions.daily]', 'type = "daily"', 'start = "2014-01-01"', 'end = "2024-01-01"', '']
    for i in range(10):
        out += [f'[assets.h{i}]', 'partitions = "hourly"', 'shell = "true"']
        if i:
            out.append(f'deps = ["h{i - 1}"]')
        out.append('')
    out += ['[assets.rollup]', 'partitions = "daily"', 'deps = ["h9"]', 'shell = "true"', '']
    write(root / "defs" / "chain.toml", "\n".join(out))


def gen_steps(root: Path, n=1000, output=False):
    """n trivial steps: one static-partitioned asset whose compute is `true`."""
    keys = ", ".join(f'"k{i}"' for i in range(n))
    shell = 'true' if not output else ': > \\"$DG_OUTPUT\\"'
    write(root / "defs" / "steps.toml", f'[partitions.p]\ntype = "static"\nkeys = [{keys}]\n'
          f'[assets.t]\npartitions = "p"\nshell = "{shell}"\n' + ("" if output else "output = false\n"))


def gen_pool_steps(root: Path, n=1000, pool=True):
    """`gen_steps` (output = false), with every step in a pool big enough never to wait."""
    gen_steps(root, n=n)
    if pool:
        write(root / "dg.toml", "[pools]\nbig = 10000\n")
        steps = root / "defs" / "steps.toml"
        steps.write_text(steps.read_text() + 'pool = "big"\n')


def gen_stress_many(root: Path, n=10_000):
    """n trivial partitions (each writes one row), and `all_of_them`, which reads every one."""
    keys = ", ".join('"k%d"' % i for i in range(n))
    write(root / "defs" / "stress.toml", "\n".join([
        "[partitions.p]", 'type = "static"', "keys = [%s]" % keys, "",
        "[assets.many]", 'partitions = "p"',
        """shell = 'printf "k\\n%s\\n" "$DG_PARTITION_KEY" > "$DG_OUTPUT"'""", "",
        "[assets.all_of_them]", 'deps = ["many"]', "output = false",
        """shell = 'wc -l < "$DG_INPUT_MANY"'""", ""]))


def gen_loud(root: Path, mb=100):
    """Steps that print `mb` MB to stdout, in lines and as one line."""
    write(root / "defs" / "loud.toml", "\n".join([
        "[assets.lines]", "output = false",
        "shell = 'yes 0123456789abcdefghij | head -c %d000000'" % mb, "",
        "[assets.one_line]", "output = false",
        "shell = \"head -c %d000000 /dev/zero | tr '\\\\0' x\"" % mb, ""]))


def gen_checked_steps(root: Path, check: str, n=1000):
    """n steps writing a one-row CSV, each partition checked by `check` (a TOML table body), or not."""
    keys = ", ".join(f'"k{i}"' for i in range(n))
    text = (f'[partitions.p]\ntype = "static"\nkeys = [{keys}]\n'
            '[assets.t]\npartitions = "p"\nshell = "echo x > \\"$DG_OUTPUT\\""\n')
    if check:
        text += f"[assets.t.checks.c]\n{check}\n"
    write(root / "defs" / "steps.toml", text)


def gen_range(root: Path, backfill=True):
    """1,896 daily partitions of a trivial asset, as range steps of 100 (or one step each)."""
    if backfill:
        shell = """{ echo dg_partition,n; echo "$DG_PARTITION_KEYS" | tr -d '[]"' | tr ',' '\\n' | sed 's/$/,1/'; } > "$DG_OUTPUT\""""
        extra = "backfill = { max_partitions_per_step = 100 }\n"
    else:
        shell = """printf 'n\\n1\\n' > "$DG_OUTPUT\""""
        extra = ""
    q = "'''"
    write(root / "defs" / "range.toml",
          '[partitions.days]\ntype = "daily"\nstart = "2019-01-01"\n\n'
          f'[assets.t]\npartitions = "days"\nshell = {q}{shell}{q}\n{extra}')


def spawn_baseline(n=1000):
    """Seconds per `sh -c true` spawned from a shell loop: the process cost dg cannot avoid."""
    t0 = time.perf_counter()
    subprocess.run(["sh", "-c", f"i=0; while [ $i -lt {n} ]; do sh -c true; i=$((i+1)); done"], check=True)
    return (time.perf_counter() - t0) / n


def fresh(path: Path):
    def setup():
        shutil.rmtree(path / ".dg", ignore_errors=True)
    return setup


def gen_history(root: Path, hourly_assets=12):
    """A chain of hourly assets over 10 years (~1,050,000 partitions) with
    every partition recorded as materialized in the state store."""
    import datetime
    import sqlite3
    out = ['[partitions.hourly]', 'type = "hourly"', 'start = "2014-01-01-00:00"', 'end = "2024-01-01-00:00"', '']
    for i in range(hourly_assets):
        out += [f'[assets.h{i}]', 'partitions = "hourly"', 'shell = "true"']
        if i:
            out.append(f'deps = ["h{i - 1}"]')
        out.append('')
    write(root / "defs" / "chain.toml", "\n".join(out))
    # Let dg create the database with its own schema.
    subprocess.run([DG, "partitions", "add", "x", "y"], cwd=root, capture_output=True)
    subprocess.run([DG, "status", "--select", "h0"], cwd=root, capture_output=True, check=True,
                   env=dict(os.environ, DG_NOW="2024-06-01T00:00:00Z"))
    t = datetime.datetime(2014, 1, 1)
    keys = []
    while t < datetime.datetime(2024, 1, 1):
        keys.append(t.strftime("%Y-%m-%d-%H:%M"))
        t += datetime.timedelta(hours=1)
    db = sqlite3.connect(root / ".dg" / "state.db")
    now = "2024-06-01T00:00:00Z"
    db.executemany(
        "INSERT INTO materializations (asset, partition, run_id, created_at, code_version, data_version, inputs, input_fp, metadata)"
        " VALUES (?, ?, 'r0', ?, NULL, 'v', '[]', '0', '{}')",
        ((f"h{i}", k, now) for i in range(hourly_assets) for k in keys))
    db.executemany(
        "INSERT INTO partition_state (asset, partition, status, run_id, code_version, data_version, input_fp, updated_at)"
        " VALUES (?, ?, 'materialized', 'r0', NULL, 'v', '0', ?)",
        ((f"h{i}", k, now) for i in range(hourly_assets) for k in keys))
    db.commit()
    n = db.execute("SELECT COUNT(*) FROM materializations").fetchone()[0]
    db.close()
    return n


def gen_jobs(root: Path, jobs=50):
    """50 scheduled jobs (hourly, daily and 15-minute crons, some in other time
    zones, some catching up every tick), each over its own trivial asset."""
    write(root / "defs" / "partitions.toml", '[partitions.hourly]\ntype = "hourly"\nstart = "2024-01-01-00:00"\n')
    out = []
    crons = ["0 * * * *", "0 2 * * *", "*/15 * * * *", "30 6 * * 1"]
    zones = ["UTC", "Europe/Amsterdam", "America/New_York"]
    for n in range(jobs):
        out.append(f'[assets.a{n}]\npartitions = "hourly"\noutput = false\nshell = "true"\n')
        out.append(f'[jobs.j{n}]\nselect = "a{n}"\npartition = "latest"\nmissing = true\n'
                   f'cron = "{crons[n % len(crons)]}"\ntimezone = "{zones[n % len(zones)]}"\n'
                   f'catchup = "{"all" if n % 2 else "latest"}"\n')
    write(root / "defs" / "jobs.toml", "\n".join(out))


def gen_rows_csv(path: Path, rows=1_000_000):
    """A 5-column CSV (int, float, text with commas and quotes, date, bool)."""
    with open(path, "w") as f:
        f.write("id,amount,note,day,flag\n")
        for i in range(rows):
            f.write(f'{i},{i * 0.25:.2f},"item {i % 97}, ""x""",2024-01-{i % 28 + 1:02d},{"true" if i % 3 else "false"}\n')


def gen_random_parquet(tmp: Path) -> Path:
    """A Parquet file of about 50 MB that hardly compresses (random hex),
    written by dg itself through an fs parquet manager."""
    import random
    rnd = random.Random(1)
    csv = tmp / "random.csv"
    with open(csv, "w") as f:
        f.write("a,b,c\n")
        for _ in range(1_000_000):
            f.write("%016x,%016x,%016x\n" % (rnd.getrandbits(64), rnd.getrandbits(64), rnd.getrandbits(64)))
    p = tmp / "make-parquet"
    write(p / "defs" / "make.toml",
          f'[resources.io_manager]\ntype = "fs"\nformat = "parquet"\n\n'
          f'[assets.random]\nformat = "csv"\nshell = "cp {csv} \\"$DG_OUTPUT\\""\n')
    subprocess.run([DG, "materialize", "--select", "random"], cwd=p, capture_output=True, check=True)
    out = tmp / "random.parquet"
    shutil.copy(p / ".dg" / "storage" / "random.parquet", out)
    return out


def gen_store(root: Path, data: Path, manager: str):
    """One unpartitioned asset that copies `data` to $DG_OUTPUT, stored by `manager`."""
    resources = {
        "fs-csv": 'type = "fs"\nformat = "csv"',
        "fs-parquet": 'type = "fs"\nformat = "parquet"',
        "sqlite": 'type = "sqlite"\npath = "warehouse.db"',
        "postgres": 'type = "postgres"\nurl = "${env:DG_BENCH_POSTGRES_URL}"\nschema = "dg_bench"\nreplace_on_schema_change = true',
    }[manager]
    write(root / "defs" / "store.toml",
          f"[resources.io_manager]\n{resources}\n\n"
          f'[assets.big]\nformat = "csv"\nshell = "cp {data} \\"$DG_OUTPUT\\""\n\n'
          f'[assets.reread]\ndeps = ["big"]\nformat = "csv"\nshell = "wc -l < \\"$DG_INPUT_BIG\\" > /dev/null; : > \\"$DG_OUTPUT\\""\noutput = false\n')


def gen_sql(root: Path, data: Path, engine: str):
    """The 1,000,000-row CSV as an asset, and a `sql` asset grouping it.

    `engine` is "sqlite" or "duckdb" (embedded engines: the rows are stored
    by `fs` parquet and loaded into the engine), or "duckdb-in-db" (both
    assets stored in one DuckDB file: the query runs inside it)."""
    if engine == "duckdb-in-db":
        resources = '[resources.io_manager]\ntype = "duckdb"\npath = "warehouse.duckdb"\n\n'
        engine_line = ""
    else:
        resources = '[resources.io_manager]\ntype = "fs"\nformat = "parquet"\n\n'
        engine_line = f'engine = "{engine}"\n'
    write(root / "defs" / "sql.toml",
          resources +
          # `amount` (0.25, 0.50, …) would stay text (0.50 does not print
          # back as itself); SQLite sums text, DuckDB rightly refuses to.
          f'[assets.big]\nformat = "csv"\ncolumns = {{ amount = "float64" }}\n'
          f'shell = "cp {data} \\"$DG_OUTPUT\\""\n\n'
          f'[assets.agg]\ndeps = ["big"]\n{engine_line}'
          'sql = "SELECT day, flag, count(*) AS n, sum(amount) AS total, avg(id) AS mean_id FROM big GROUP BY day, flag"\n')


def sql_engine_ms(root: Path):
    """Engine time of the last `agg` step, from its log: loading the input
    into the engine plus running the query (0 load inside the database)."""
    import re
    logs = sorted((root / ".dg" / "logs").rglob("agg*"), key=lambda p: p.stat().st_mtime)
    text = logs[-1].read_text()
    load = sum(int(m) for m in re.findall(r"sql: loaded input .* in (\d+) ms", text))
    query = sum(int(m) for m in re.findall(r"sql: \d+ rows, \d+ columns in (\d+) ms", text))
    return load, query


def table(rows):
    w = max(len(r[0]) for r in rows)
    print(f"{'benchmark':{w}}  {'median':>10}  {'peak RSS':>10}  target")
    for name, secs, rss, target in rows:
        print(f"{name:{w}}  {secs * 1000:8.1f}ms  {rss:7.1f}MiB  {target}")


def main():
    groups = set(sys.argv[1:]) or {"load", "plan", "cron", "tick", "run", "range", "checks", "state", "io", "objstore", "sql", "dagster"}
    build()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if "load" in groups:
            p = tmp / "load"
            gen_load(p)
            s, r = run([DG, "check", "defs"], p)
            rows.append(("check defs: 10,000 assets / 200 files", s, r, "< 300 ms"))
            p = tmp / "load1"
            gen_one_file(p)
            s, r = run([DG, "check", "defs"], p)
            rows.append(("check defs: 10,000 assets in one file", s, r, "< 150 ms"))
        if "plan" in groups:
            p = tmp / "chain"
            gen_chain(p)
            now = {"DG_NOW": "2024-06-01T00:00:00Z"}
            s, r = run([DG, "plan", "--all-partitions", "--json"], p, repeat=3, env=now)
            rows.append(("plan --all-partitions --json: ~880,000 steps", s, r, "< 2 s, < 1 GiB"))
            s, r = run([DG, "plan", "--partition", "2020-06-01", "--json"], p, repeat=10, env=now)
            rows.append(("plan one day (241 steps) --json", s, r, "< 20 ms"))
            s, r = run([DG, "list", "partitions", "hourly", "--json"], p, repeat=5, env=now)
            rows.append(("list partitions hourly (87,648 keys)", s, r, ""))
        if "cron" in groups:
            p = tmp / "crons"
            gen_crons(p)
            now = {"DG_NOW": "2024-06-01T00:00:00Z"}
            s, r = run([DG, "list", "partitions", "six", "--json"], p, repeat=5, env=now)
            rows.append(("list partitions, 6-hourly cron, 10 years (14,608 keys)", s, r, ""))
            s, r = run([DG, "list", "partitions", "half", "--json"], p, repeat=5, env=now)
            rows.append(("list partitions, 30-minute cron, 10 years (175,296 keys)", s, r, ""))
            s, r = run([DG, "plan", "--select", "+day", "--all-partitions", "--json"], p, repeat=3, env=now)
            rows.append(("plan a daily reader of both, 10 years (~194,000 steps)", s, r, "< 2 s"))
        if "tick" in groups:
            p = tmp / "jobs"
            gen_jobs(p)
            # The first tick runs every new job once; a minute later nothing is due.
            run([DG, "tick"], p, repeat=1, env={"DG_NOW": "2024-06-03T10:00:00Z"})
            s, r = run([DG, "tick"], p, repeat=10, env={"DG_NOW": "2024-06-03T10:01:00Z"})
            rows.append(("tick: 50 scheduled jobs, nothing due", s, r, "< 20 ms"))
        if "run" in groups:
            base = spawn_baseline()
            rows.append(("baseline: spawn `sh -c true` (per process)", base, 0, ""))
            for output in (False, True):
                p = tmp / f"steps-{output}"
                gen_steps(p, output=output)
                s, r = run([DG, "materialize", "--all-partitions", "--jobs", "1"], p, repeat=3, setup=fresh(p))
                per = s / 1000
                label = "writes $DG_OUTPUT (fs csv)" if output else "output = false"
                rows.append((f"1,000 trivial steps --jobs 1, {label}: per step", per, r,
                             f"overhead beyond spawn {1000 * (per - base):.2f} ms (target <= 3 ms)"))
                s, r = run([DG, "materialize", "--all-partitions", "--jobs", "2"], p, repeat=3, setup=fresh(p))
                rows.append((f"1,000 trivial steps --jobs 2, {label}: per step", s / 1000, r, ""))
            p = tmp / "seed"
            shutil.copytree(ROOT / "defs", p / "defs")
            s, r = run([DG, "materialize", "--partition", "2022-01-01"], p, repeat=5, setup=fresh(p))
            rows.append(("seed example, 1 day (26 steps)", s, r, "< 150 ms"))
            s, r = run([DG, "materialize", "--partition-range", "2022-01-01...2022-01-07"], p, repeat=3, setup=fresh(p))
            rows.append(("seed example, 7 days (182 steps)", s, r, ""))
        if "pool" in groups:
            per = {}
            for pool in (False, True):
                p = tmp / f"pool-{pool}"
                gen_pool_steps(p, pool=pool)
                s, r = run([DG, "materialize", "--all-partitions", "--jobs", "1"], p, repeat=3, setup=fresh(p))
                per[pool] = s / 1000
                label = "in a pool" if pool else "no pool"
                rows.append((f"1,000 trivial steps --jobs 1, {label}: per step", per[pool], r, ""))
            rows.append(("pool accounting (slot taken and given back in state.db): per step",
                         per[True] - per[False], 0, "< 1 ms"))
        if "stress" in groups:
            p = tmp / "stress-many"
            gen_stress_many(p)
            s, r = run([DG, "materialize", "--select", "many", "--all-partitions", "--jobs", "2"], p, repeat=1)
            rows.append(("10,000 partitions of a trivial asset, --jobs 2", s, r, f"{s / 10:.2f} ms per step"))
            s, r = run([DG, "materialize", "--select", "all_of_them"], p, repeat=3)
            rows.append(("a step reading 10,000 upstream partitions (prepare + run)", s, r, "< 2 s, < 200 MiB"))
            p = tmp / "loud"
            gen_loud(p)
            for a in ("lines", "one_line"):
                s, r = run([DG, "materialize", "--select", a], p, repeat=3, setup=fresh(p))
                rows.append((f"a step printing 100 MB to stdout ({a.replace('_', ' ')})", s, r, "dg < 64 MiB"))
        if "checks" in groups:
            base = spawn_baseline()
            per = {}
            for name, check in [("none", ""), ("sql", 'sql = "SELECT * FROM t WHERE x IS NULL"'),
                                ("shell", 'shell = "true"')]:
                p = tmp / f"checks-{name}"
                gen_checked_steps(p, check)
                s, r = run([DG, "materialize", "--all-partitions", "--jobs", "1"], p, repeat=3, setup=fresh(p))
                per[name] = s / 1000
                rows.append((f"1,000 steps --jobs 1, check: {name}: per step", per[name], r, ""))
            rows.append(("sql check (embedded engine): added per partition", per["sql"] - per["none"], 0,
                         "target < 5 ms"))
            rows.append(("shell check `true`: added per partition beyond spawn",
                         per["shell"] - per["none"] - base, 0, "target < 5 ms"))
        if "range" in groups:
            now = {"DG_NOW": "2024-03-11T00:00:00Z"}
            p = tmp / "range"
            gen_range(p)
            s, r = run([DG, "materialize", "--all-partitions"], p, repeat=5, env=now, setup=fresh(p))
            rows.append(("1,896 daily partitions as 19 range steps of 100 (fs csv)", s, r, "< 1 s"))
            p = tmp / "range-one"
            gen_range(p, backfill=False)
            s, r = run([DG, "materialize", "--all-partitions"], p, repeat=1, env=now, setup=fresh(p))
            rows.append(("the same, one step per partition (1,896 steps)", s, r, ""))
        if "slurm" in groups:
            # Needs a cluster (`. .ci/slurm.sh`): 1,000 ready partitions of one
            # asset go as one job array. Submission is timed by dg itself (its
            # debug line per `sbatch` call); the whole run gives the
            # scheduling cost per step, next to the local executor's.
            p = tmp / "slurm-steps"
            gen_steps(p)
            env = dict(os.environ, NO_COLOR="1", DG_SLURM_POLL="250ms")
            part = os.environ.get("DG_TEST_SLURM_PARTITION", "debug")
            write(p / "dg.toml", f'[executor]\ntype = "slurm"\npartition = "{part}"\n')
            for _ in range(2):
                fresh(p)()
                t0 = time.perf_counter()
                out = subprocess.run([DG, "-v", "materialize", "--all-partitions"], cwd=p, env=env,
                                     capture_output=True, text=True)
                total = time.perf_counter() - t0
                if out.returncode != 0:
                    sys.exit(f"slurm run exited {out.returncode}:\n{out.stderr[-2000:]}")
                calls = [float(l.rsplit(" in ", 1)[1].split()[0]) / 1000
                         for l in out.stderr.splitlines() if "sbatch: " in l and " as job array " in l]
                rows.append((f"slurm: submit 1,000 ready partitions ({len(calls)} sbatch call(s))",
                             sum(calls), 0, "< 2 s, <= 3 sbatch calls"))
                rows.append(("slurm: 1,000 trivial steps, whole run: per step", total / 1000, 0,
                             "cluster's start rate dominates"))
            fresh(p)()
            s, r = run([DG, "materialize", "--all-partitions", "--executor", "local", "--jobs", "2"], p,
                       repeat=1, setup=fresh(p))
            rows.append(("local: the same 1,000 steps --jobs 2: per step", s / 1000, r, ""))
        if "state" in groups:
            p = tmp / "history"
            n = gen_history(p)
            now = {"DG_NOW": "2024-06-01T00:00:00Z"}
            s, r = run([DG, "status", "--json"], p, repeat=3, env=now)
            rows.append((f"status over {n:,} materialization records", s, r, "< 1 s"))
            s, r = run([DG, "status", "--select", "h0", "--json"], p, repeat=3, env=now)
            rows.append(("status of one asset (87,648 partitions)", s, r, ""))
            s, r = run([DG, "report", "--out", str(tmp / "report.html")], p, repeat=3, env=now)
            size = (tmp / "report.html").stat().st_size / 1e6
            rows.append((f"report over {n:,} materialization records ({size:.2f} MB)", s, r, "< 1 s, < 5 MB"))
            p2 = tmp / "chain-missing"
            gen_chain(p2)
            s, r = run([DG, "materialize", "--all-partitions", "--missing", "--dry-run", "--json"], p2, repeat=3, env=now)
            rows.append(("--missing planning over 880,132 candidate steps", s, r, "< 3 s"))
        if "objstore" in groups:
            # A 50 MB Parquet output stored in and loaded from a local S3
            # server (moto, started like CI does by .ci/s3.sh).
            holder = subprocess.Popen(
                ["bash", "-c", ". .ci/s3.sh >&2 && echo \"$DG_TEST_S3_ENDPOINT\" && read _"],
                cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            endpoint = holder.stdout.readline().strip()
            if endpoint:
                pq = gen_random_parquet(tmp)
                size_mb = pq.stat().st_size / 1e6
                p = tmp / "objstore"
                write(p / "defs" / "store.toml",
                      f'[resources.io_manager]\ntype = "object_store"\nurl = "s3://dg-test/bench"\nformat = "parquet"\n'
                      f'endpoint = "{endpoint}"\nallow_http = true\nregion = "us-east-1"\n'
                      f'access_key_id = "bench"\nsecret_access_key = "bench"\n\n'
                      f'[assets.big]\nformat = "parquet"\nshell = "cp {pq} \\"$DG_OUTPUT\\""\n\n'
                      f'[assets.reread]\ndeps = ["big"]\nformat = "parquet"\nshell = "test -s \\"$DG_INPUT_BIG\\""\noutput = false\n')
                s, r = run([DG, "materialize", "--select", "big"], p, repeat=3, setup=fresh(p))
                rows.append((f"store a {size_mb:.0f} MB Parquet output in object_store (moto S3)", s, r,
                             f"{size_mb / s:,.0f} MB/s; target >= 100 MB/s"))
                s, r = run([DG, "materialize", "--select", "reread"], p, repeat=3)
                rows.append(("load it back from object_store", s, r, f"{size_mb / s:,.0f} MB/s; target >= 100 MB/s"))
            else:
                rows.append(("object_store: .ci/s3.sh could not start moto", 0, 0, "skipped"))
            holder.stdin.close()
            holder.wait()
        if "io" in groups:
            data = tmp / "rows.csv"
            gen_rows_csv(data)
            size_mb = data.stat().st_size / 1e6
            managers = ["fs-csv", "fs-parquet", "sqlite"]
            pg_holder = None
            if not os.environ.get("DG_BENCH_POSTGRES_URL") and os.geteuid() == 0:
                # Start a throwaway server like CI does; it stops when the
                # holding shell's stdin closes.
                pg_holder = subprocess.Popen(
                    ["bash", "-c", ". .ci/postgres.sh >&2 && echo \"$DG_TEST_POSTGRES_URL\" && read _"],
                    cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                url = pg_holder.stdout.readline().strip()
                if url:
                    os.environ["DG_BENCH_POSTGRES_URL"] = url
            if os.environ.get("DG_BENCH_POSTGRES_URL"):
                managers.append("postgres")
            for m in managers:
                p = tmp / f"store-{m}"
                gen_store(p, data, m)
                s, r = run([DG, "materialize", "--select", "big"], p, repeat=3, setup=fresh(p))
                rows.append((f"store 1,000,000 CSV rows ({size_mb:.0f} MB) through {m}", s, r,
                             f"{1e6 / s:,.0f} rows/s, {size_mb / s:,.0f} MB/s"))
                s, r = run([DG, "materialize", "--select", "reread"], p, repeat=3)
                rows.append((f"load them back as CSV from {m}", s, r, f"{1e6 / s:,.0f} rows/s, {size_mb / s:,.0f} MB/s"))
            if pg_holder:
                pg_holder.stdin.close()
                pg_holder.wait()
            if "postgres" not in managers:
                rows.append(("postgres store: set DG_BENCH_POSTGRES_URL (e.g. after `. .ci/postgres.sh`)", 0, 0, "skipped"))
        if "sql" in groups:
            data = tmp / "rows.csv"
            if not data.exists():
                gen_rows_csv(data)
            for engine in ("sqlite", "duckdb", "duckdb-in-db"):
                p = tmp / f"sql-{engine}"
                gen_sql(p, data, engine)
                run([DG, "materialize", "--select", "big"], p, repeat=1)
                loads, queries = [], []

                def after():
                    load, query = sql_engine_ms(p)
                    loads.append(load)
                    queries.append(query)
                s, r = run([DG, "materialize", "--select", "agg"], p, repeat=5, after=after)
                load, query = statistics.median(loads), statistics.median(queries)
                target = "engine < 300 ms" if engine.startswith("duckdb") else "(SQLite: 1.1 s)"
                rows.append((f"sql GROUP BY over 1,000,000 rows, {engine}: whole command", s, r, ""))
                rows.append((f"  engine time (load {load:.0f} ms + query {query:.0f} ms)",
                             (load + query) / 1000, 0, target))
    table(rows)
    if "dagster" in groups:
        # The side-by-side comparison with Dagster 1.13.27 (installs it into a
        # scratch venv when missing); it prints its own table and ratios.
        print()
        subprocess.run([sys.executable, str(ROOT / "bench" / "dagster_compare.py")], check=True)


if __name__ == "__main__":
    main()
