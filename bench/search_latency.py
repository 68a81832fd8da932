#!/usr/bin/env python3
"""Search latency on the large demo catalog: p50 and p99 of ranked text search and the
navigation reads, against baselines measured in the same run (/healthz, no database; an
unfiltered personnel page, no text search).

Usage: bench/search_latency.py [--personnel 1000000] [--requests 300]
       [--database-url postgres://postgres@127.0.0.1:5432/test] [--keep DIR] [--reuse DIR]
       [--binary PATH]

Builds nothing: run `cargo build --release` first. Talks only to 127.0.0.1, one request at
a time. `--keep DIR` leaves the SQLite catalog in DIR (or the PostgreSQL database, named in
DIR/database-url) so that `--reuse DIR` can measure again without the import; with
`--binary PATH` (another build, e.g. of the base commit) the same catalog measures two
versions of the server. Targets
(issue 12): p50 < 10 ms and p99 < 50 ms for personnel text search within an event and for
company search.
"""
import argparse, json, os, re, shutil, statistics, subprocess, sys, tempfile, time, urllib.parse, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target"), "release", "unlockd")
TARGET_P50_MS, TARGET_P99_MS = 10.0, 50.0


def run(*args, env):
    started = time.time()
    out = subprocess.run([BIN, *args], env=env, check=True, capture_output=True, text=True)
    return out.stdout, time.time() - started


def get(url, key=None):
    req = urllib.request.Request(url)
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    started = time.perf_counter()
    with urllib.request.urlopen(req, timeout=30) as r:
        body = r.read()
    return time.perf_counter() - started, json.loads(body)


def percentile(sorted_ms, q):
    return sorted_ms[min(len(sorted_ms) - 1, int(round(q * (len(sorted_ms) - 1))))]


def measure(url, key, n):
    times = sorted(get(url, key)[0] * 1000 for _ in range(n))
    return statistics.median(times), percentile(times, 0.99)


def build(work, db, a, env):
    _, t = run("demo-data", "--out", f"{work}/data", "--events", str(a.events), "--personnel", str(a.personnel), env=env)
    print(f"demo-data: {a.personnel:,} personnel in {t:.1f} s")
    _, t = run("import", "--events", f"{work}/data/events.csv", "--exhibitors", f"{work}/data/exhibitors.csv",
               "--personnel", f"{work}/data/personnel.csv", env=env)
    print(f"import (with the search tables derived): {t:.1f} s ({a.personnel / t:,.0f} rows/s)")
    shutil.rmtree(f"{work}/data", ignore_errors=True)


def main():
    global BIN
    p = argparse.ArgumentParser()
    p.add_argument("--personnel", type=int, default=1_000_000)
    p.add_argument("--events", type=int, default=50)
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--database-url", default=None, help="default: a fresh SQLite file; a postgres:// URL gets a fresh database on that server")
    p.add_argument("--keep", default=None, help="build into this directory and keep the catalog")
    p.add_argument("--reuse", default=None, help="measure a catalog an earlier --keep left")
    p.add_argument("--binary", default=BIN, help="the unlockd binary to run (default: this checkout's release build)")
    a = p.parse_args()
    BIN = os.path.abspath(a.binary)
    print("binary:", BIN)
    if not os.path.exists(BIN):
        sys.exit("build first: cargo build --release")
    work = a.reuse or a.keep or tempfile.mkdtemp(prefix="unlockd-search-bench-")
    os.makedirs(work, exist_ok=True)
    created_db = None
    if a.reuse:
        saved = os.path.join(work, "database-url")
        db = open(saved).read().strip() if os.path.exists(saved) else f"sqlite://{work}/bench.db"
    else:
        db = a.database_url or f"sqlite://{work}/bench.db"
        if db.startswith("postgres"):
            server_url = db.rpartition("/")[0]
            name = f"unlockd_search_bench_{os.getpid()}"
            subprocess.run(["psql", db, "-qc", f"CREATE DATABASE {name}"], check=True)
            created_db = (a.database_url, name)
            db = f"{server_url}/{name}"
        open(os.path.join(work, "database-url"), "w").write(db)
    print("backend:", "postgres" if db.startswith("postgres") else "sqlite")
    env = dict(os.environ, UNLOCKD_DATABASE_URL=db, UNLOCKD_LOG="warn")
    server = None
    try:
        if not a.reuse:
            build(work, db, a, env)
        out, _ = run("admin", "accounts", "create", "--name", f"bench-{os.getpid()}", "--credits", "1000", "--json", env=env)
        key = json.loads(out)["api_key"]
        log_path = f"{work}/server-{os.getpid()}.log"
        log = open(log_path, "w")
        server = subprocess.Popen([BIN, "serve", "--listen", "127.0.0.1:0", "--rate-limit-per-minute", "0",
                                   "--ip-rate-limit-per-minute", "0", "--log-format", "json"],
                                  env=dict(env, UNLOCKD_LOG="info"), stderr=log)
        url = None
        deadline = time.time() + 120
        while url is None and time.time() < deadline:
            m = re.search(r'"url":"(http://[^"]+)"', open(log_path).read())
            url = m.group(1) if m else None
            time.sleep(0.1)
        if url is None:
            sys.exit("the server did not start")
        base = f"{url}/external"
        q = urllib.parse.quote
        person = lambda text: f"{base}/personnel/list?event_id=139574&search_query={q(text)}"
        company = lambda text: f"{base}/contacts/search?company_name={q(text)}"
        cases = [
            ("baseline", "healthz", f"{url}/healthz", None),
            ("baseline", "personnel page 1 (no search)", f"{base}/personnel/list?event_id=139574", key),
            ("personnel", "search 'vp sales'", person("vp sales"), key),
            ("personnel", "search 'sales'", person("sales"), key),
            ("personnel", "search 'head of sales' p3", person("head of sales") + "&page=3", key),
            ("personnel", "search 'ava smith'", person("ava smith"), key),
            ("personnel", "search 'nordic' (company)", person("nordic"), key),
            ("personnel", "search 'Smtih' (misspelled)", person("Smtih"), key),
            ("personnel", "search 'zzqx' (nothing)", person("zzqx"), key),
            ("company", "'Nordic Robotics AB' (exact)", company("Nordic Robotics AB"), key),
            ("company", "'nordic robotics'", company("nordic robotics"), key),
            ("company", "'nordic' page 50", company("nordic") + "&page=50", key),
            ("company", "'Nordic Robotcs' (misspelled)", company("Nordic Robotcs"), key),
            ("company", "'blue' + role 'vp'", company("blue") + "&role=vp", key),
            ("company", "'zzqx' (nothing)", company("zzqx"), key),
            ("navigation", "exhibitors list", f"{base}/exhibitors/list?event_id=139574", key),
            ("navigation", "exhibitors list, department", f"{base}/exhibitors/list?event_id=139574&department=sales&jobTitle=vp", key),
            ("navigation", "exhibitor profile", f"{base}/exhibitors/profile?exhibitor_id=5001", key),
            ("navigation", "personnel events", f"{base}/personnel/events?personnel_id=789", key),
        ]
        _, page = get(cases[1][2], key)
        print(f"event 139574 has {page['total']:,} people; {a.requests} requests per case, one at a time")
        print(f"{'group':10} {'case':34} {'total':>8} {'p50 ms':>8} {'p99 ms':>8} {'x base':>7}  target")
        base_p50 = None
        misses = 0
        for group, name, u, k in cases:
            _, body = get(u, k)
            total = body.get("total", "")
            measure(u, k, 10)  # warm up
            p50, p99 = measure(u, k, a.requests)
            base_p50 = base_p50 or p50
            verdict = ""
            if group in ("personnel", "company"):
                ok = p50 < TARGET_P50_MS and p99 < TARGET_P99_MS
                misses += not ok
                verdict = "ok" if ok else "MISS"
            print(f"{group:10} {name:34} {total!s:>8} {p50:8.2f} {p99:8.2f} {p50 / base_p50:7.1f}  {verdict}")
        print("all search cases within p50 < 10 ms and p99 < 50 ms" if misses == 0 else f"{misses} search case(s) missed the target")
    finally:
        if server:
            server.terminate()
            server.wait(timeout=30)
        if not (a.keep or a.reuse):
            shutil.rmtree(work, ignore_errors=True)
            if created_db:
                subprocess.run(["psql", created_db[0], "-qc", f"DROP DATABASE IF EXISTS {created_db[1]} WITH (FORCE)"])


if __name__ == "__main__":
    main()
