#!/usr/bin/env python3
"""Catalog-read latency on a large catalog, as ratios to /healthz measured in the same run.

Usage: bench/catalog_reads.py [--personnel 1000000] [--requests 200]
Builds nothing: run `cargo build --release` first. Talks only to 127.0.0.1, bounded in
count. Prints medians and p95 per endpoint, and each median as a multiple of the /healthz
median (the baseline: same server, same client, no database).
"""
import argparse, json, os, re, shutil, statistics, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target"), "release", "unlockd")


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


def measure(url, key, n):
    times = []
    for _ in range(n):
        t, _ = get(url, key)
        times.append(t * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--personnel", type=int, default=1_000_000)
    p.add_argument("--events", type=int, default=50)
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--database-url", default=None, help="default: a fresh SQLite file; a postgres:// URL gets a fresh database on that server")
    a = p.parse_args()
    if not os.path.exists(BIN):
        sys.exit("build first: cargo build --release")
    work = tempfile.mkdtemp(prefix="unlockd-bench-")
    db = a.database_url or f"sqlite://{work}/bench.db"
    if db.startswith("postgres"):
        server_url = db.rpartition("/")[0]
        name = f"unlockd_bench_{os.getpid()}"
        subprocess.run(["psql", db, "-qc", f"CREATE DATABASE {name}"], check=True)
        db = f"{server_url}/{name}"
    print("backend:", "postgres" if db.startswith("postgres") else "sqlite")
    env = dict(os.environ, UNLOCKD_DATABASE_URL=db, UNLOCKD_LOG="warn")
    try:
        _, t = run("demo-data", "--out", f"{work}/data", "--events", str(a.events), "--personnel", str(a.personnel), env=env)
        print(f"demo-data: {a.personnel} personnel in {t:.1f} s")
        _, t = run("import", "--events", f"{work}/data/events.csv", "--exhibitors", f"{work}/data/exhibitors.csv",
                   "--personnel", f"{work}/data/personnel.csv", env=env)
        print(f"import: {t:.1f} s ({a.personnel / t:,.0f} rows/s)")
        out, _ = run("admin", "accounts", "create", "--name", "bench", "--credits", "1000", "--json", env=env)
        key = json.loads(out)["api_key"]
        # Logs go to a file: a pipe nobody drains would fill up and stall the server.
        log = open(f"{work}/server.log", "w")
        server = subprocess.Popen([BIN, "serve", "--listen", "127.0.0.1:0", "--rate-limit-per-minute", "0",
                                   "--ip-rate-limit-per-minute", "0", "--log-format", "json"],
                                  env=dict(env, UNLOCKD_LOG="info"), stderr=log)
        url = None
        deadline = time.time() + 60
        while url is None and time.time() < deadline:
            m = re.search(r'"url":"(http://[^"]+)"', open(f"{work}/server.log").read())
            url = m.group(1) if m else None
            time.sleep(0.1)
        if url is None:
            sys.exit("the server did not start")
        try:
            base = f"{url}/external"
            cases = [
                ("healthz (baseline)", f"{url}/healthz", None),
                ("events list", f"{base}/events/list?pageSize=20", key),
                ("personnel list, page 1", f"{base}/personnel/list?event_id=139574", key),
                ("personnel list, page 100", f"{base}/personnel/list?event_id=139574&page=100", key),
                ("personnel list, department", f"{base}/personnel/list?event_id=139574&department=sales", key),
                ("personnel list, search_query", f"{base}/personnel/list?event_id=139574&search_query=vp%20sales", key),
                ("personnel profile", f"{base}/personnel/profile?personnel_id=789", key),
                ("contacts search, company", f"{base}/contacts/search?company_name=nordic%20robotics", key),
                ("contacts search, company+name", f"{base}/contacts/search?company_name=nordic&person_name=ava", key),
            ]
            _, page = get(cases[2][1], key)
            print(f"event 139574 has {page['total']:,} people")
            baseline = None
            print(f"{'endpoint':34} {'median ms':>10} {'p95 ms':>8} {'x healthz':>10}")
            for name, u, k in cases:
                measure(u, k, 10)  # warm up
                med, p95 = measure(u, k, a.requests)
                baseline = baseline or med
                print(f"{name:34} {med:10.2f} {p95:8.2f} {med / baseline:10.1f}")
        finally:
            server.terminate()
            server.wait(timeout=30)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if db.startswith("postgres"):
            subprocess.run(["psql", a.database_url, "-qc", f"DROP DATABASE IF EXISTS {db.rpartition('/')[2]} WITH (FORCE)"])


if __name__ == "__main__":
    main()
