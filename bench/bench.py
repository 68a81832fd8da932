#!/usr/bin/env python3
"""The unlockd benchmark: drives wrk against unlockd and same-run baselines, prints one table.

Run it through bench/run, which installs wrk and builds everything in release mode first.
Everything listens on 127.0.0.1; every load phase is bounded by --seconds. Python only
orchestrates (starts servers, creates accounts, writes wrk's work plans, reads results):
all load comes from wrk.

Databases, per backend, each fresh (SQLite files in a temp dir; PostgreSQL databases created
on --postgres-url's server and dropped at the end):
  main   catalog of --people people: the create scenarios, with the worker off, so every
         create does the full write and nothing else competes for the machine
  flow   10,000 people: the worker draining a backlog, polls of finished tasks, the access
         log cost, end to end with the worker on (`--only worker`: the backlog alone, in a
         database of its own)
  probe  10,000 people, and 1,000,000 with --large: create and poll p50 on an otherwise
         identical database, to see what the catalog's size costs
"""
import argparse
import csv
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import http.client
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH_DIR = os.path.join(ROOT, "bench")
# Cargo's build directory: CARGO_TARGET_DIR when set (it then holds the baseline's build
# too), else the project's and the baseline project's own target/ directories.
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
BASELINE_TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(BENCH_DIR, "baseline", "target")
BIN = os.path.join(TARGET, "release", "unlockd")
BASELINE_BIN = os.path.join(BASELINE_TARGET, "release", "unlockd-bench-baseline")
CACHE = os.path.join(TARGET, "bench-cache")
CREATE_PATH = "/external/contacts/unlock"
TASK_PATH = "/external/contacts/unlock-tasks/"
CREDITS_PER_ACCOUNT = 1_000_000_000
SMALL_CATALOG = 10_000
# Accounts in each catalog-size database (fresh pairs = accounts x people).
PROBE_ACCOUNTS = 128
# Interleaved comparisons (access log, catalog size) alternate their sides this many times.
ROUNDS = 3
LARGE_CATALOG = 1_000_000


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_call(port, method, path, key=None, body=None, timeout=60):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    if body is not None:
        headers["Content-Type"] = "application/json"
        body = json.dumps(body)
    try:
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        return r.status, r.read().decode()
    finally:
        conn.close()


# ---------------------------------------------------------------- catalog and plans


def catalog_dir(people):
    """Demo catalog files for `people` people, generated once and cached under target/."""
    out = os.path.join(CACHE, f"catalog-{people}")
    if os.path.exists(os.path.join(out, "done")):
        return out
    shutil.rmtree(out, ignore_errors=True)
    events = max(10, min(200, people // 2000))
    log(f"generating a demo catalog of {people:,} people ({events} events) into {out}")
    subprocess.run([BIN, "demo-data", "--out", out, "--events", str(events), "--personnel", str(people)],
                   check=True, stdout=subprocess.DEVNULL)
    open(os.path.join(out, "done"), "w").close()
    return out


def blocks_file(catalog, size):
    """Disjoint blocks of `size` people, each block linked to one event (its first)."""
    path = os.path.join(catalog, f"blocks-{size}.txt")
    if os.path.exists(path):
        return path
    by_event = defaultdict(list)
    with open(os.path.join(catalog, "personnel.csv"), newline="") as f:
        for row in csv.DictReader(f):
            by_event[row["event_ids"].split(";")[0]].append(row["id"])
    lines = []
    for event, ids in sorted(by_event.items()):
        for i in range(0, len(ids) - size + 1, size):
            lines.append(f"{event} {','.join(ids[i:i + size])}")
    # Interleave events so consecutive requests touch different events (same order every time).
    random.Random(42).shuffle(lines)
    with open(path + ".tmp", "w") as f:
        f.write("\n".join(lines) + "\n")
    os.rename(path + ".tmp", path)
    return path


def read_blocks(path):
    out = []
    with open(path) as f:
        for line in f:
            event, ids = line.split()
            out.append((event, ids.split(",")))
    return out


# ---------------------------------------------------------------- databases and servers


class Backend:
    def __init__(self, name, work, postgres_url):
        self.name = name
        self.work = work
        self.postgres_url = postgres_url
        self.created = []

    def fresh_db(self, tag):
        if self.name == "sqlite":
            return f"sqlite://{self.work}/{tag}.db"
        server, _, _ = self.postgres_url.rpartition("/")
        db = f"unlockd_bench_{os.getpid()}_{tag}"
        subprocess.run(["psql", self.postgres_url, "-qXc", f"DROP DATABASE IF EXISTS {db}"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(["psql", self.postgres_url, "-qXc", f"CREATE DATABASE {db}"], check=True,
                       stdout=subprocess.DEVNULL)
        self.created.append(db)
        return f"{server}/{db}"

    def drop_all(self):
        for db in self.created:
            subprocess.run(["psql", self.postgres_url, "-qXc", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.created = []


class Database:
    """One fresh unlockd database with a catalog and some funded accounts."""

    def __init__(self, backend, tag, people):
        self.backend = backend
        self.url = backend.fresh_db(tag)
        self.env = dict(os.environ, UNLOCKD_DATABASE_URL=self.url, UNLOCKD_LOG="warn")
        self.catalog = catalog_dir(people)
        self.people = people
        started = time.time()
        r = subprocess.run([BIN, "import", "--events", f"{self.catalog}/events.csv",
                            "--exhibitors", f"{self.catalog}/exhibitors.csv",
                            "--personnel", f"{self.catalog}/personnel.csv"],
                           env=self.env, capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"import into {self.url} failed ({r.returncode}):\n{r.stdout}{r.stderr}")
        log(f"{backend.name} {tag}: imported {people:,} people in {time.time() - started:.1f} s")

    def accounts(self, n, prefix):
        keys = []
        for i in range(n):
            r = subprocess.run([BIN, "admin", "accounts", "create", "--name", f"{prefix}{i}",
                                "--credits", str(CREDITS_PER_ACCOUNT), "--json"],
                               env=self.env, capture_output=True, text=True)
            if r.returncode != 0:
                raise SystemExit(f"accounts create failed ({r.returncode}): {r.stdout}{r.stderr}")
            keys.append(json.loads(r.stdout)["api_key"])
        return keys

    def verify(self):
        r = subprocess.run([BIN, "admin", "ledger", "verify"], env=self.env, capture_output=True, text=True)
        if r.returncode == 0:
            return "ok"
        detail = (r.stdout + r.stderr).strip().splitlines()
        return f"FAILED (exit {r.returncode}: {detail[0] if detail else ''})"


class Server:
    def __init__(self, argv, env, log_path, ready_path):
        self.port = free_port()
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.final_rss = None
        self.proc = subprocess.Popen([a.replace("{port}", str(self.port)) for a in argv], env=env,
                                     stdout=self.log, stderr=self.log)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited with {self.proc.returncode}; see {log_path}")
            try:
                if http_call(self.port, "GET", ready_path, timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise SystemExit(f"server not ready after 120 s; see {log_path}")

    def peak_rss_mb(self):
        if self.proc.poll() is not None:
            return self.final_rss
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                m = re.search(r"VmHWM:\s+(\d+) kB", f.read())
            return int(m.group(1)) / 1024 if m else None
        except OSError:
            return None

    def stop(self):
        if self.proc.poll() is None:
            self.final_rss = self.peak_rss_mb()
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def unlockd(db, work, worker, log_level="warn"):
    env = dict(db.env)
    if log_level is None:
        env.pop("UNLOCKD_LOG", None)  # the server's default (info: one access-log line per request)
    else:
        env["UNLOCKD_LOG"] = log_level
    env["UNLOCKD_LOG_FORMAT"] = "json"
    argv = [BIN, "serve", "--listen", "127.0.0.1:{port}", "--rate-limit-per-minute", "0",
            "--ip-rate-limit-per-minute", "0"]
    if not worker:
        argv.append("--no-worker")
    return Server(argv, env, os.path.join(work, "unlockd.log"), "/readyz")


# ---------------------------------------------------------------- wrk


class Bench:
    def __init__(self, args, work):
        self.args = args
        self.work = work
        self.rows = []
        self.notes = []
        self.peak_rss = {}

    def plan(self, name, lines):
        path = os.path.join(self.work, name)
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def wrk(self, port, script, env, connections=None, threads=None, seconds=None):
        connections = connections or self.args.connections
        threads = threads or self.args.threads
        seconds = seconds or self.args.seconds
        env = dict(os.environ, BENCH_DIR=BENCH_DIR, BENCH_THREADS=str(threads), **env)
        out = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s",
                              "--timeout", "40s", "-s", os.path.join(BENCH_DIR, "wrk", script),
                              f"http://127.0.0.1:{port}/"],
                             env=env, capture_output=True, text=True, timeout=seconds + 120)
        m = re.search(r"BENCH_RESULT (\{.*\})", out.stdout)
        if out.returncode != 0 or not m:
            raise SystemExit(f"wrk failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
        r = json.loads(m.group(1))
        r["rate"] = r["requests"] / (r["duration_us"] / 1e6)
        return r

    def row(self, scenario, backend, result, unit="req/s", baseline=None, verify="", rss=None,
            rate=None, p50=None, p99=None, max_=None, errors=None, note=""):
        rate = result["rate"] if rate is None and result else rate
        if errors is None and result:
            errors = result["errors_status"] + result["errors_socket"]
        if result and p50 is None:
            p50, p99, max_ = result["p50_us"] / 1000, result["p99_us"] / 1000, result["max_us"] / 1000
        ratio = None
        base_name = ""
        if baseline:
            base_name, base_rate = baseline
            ratio = rate / base_rate if base_rate else None
        self.rows.append(dict(scenario=scenario, backend=backend, rate=rate, unit=unit, baseline=base_name,
                              ratio=ratio, p50=p50, p99=p99, max=max_, errors=errors, verify=verify,
                              rss=rss, note=note))
        shown = f"{rate:,.0f} {unit}" if rate is not None else "-"
        log(f"  {backend:8} {scenario:34} {shown}" + (f"  x{ratio:.2f} {base_name}" if ratio else "")
            + (f"  p50 {p50:.2f} ms" if p50 is not None else "") + (f"  verify {verify}" if verify else ""))
        return rate

    def create_run(self, port, keys, blocks, path=CREATE_PATH, slot_offset=0, seconds=None):
        env = dict(BENCH_KEYS=self.plan("keys.txt", keys), BENCH_BLOCKS=blocks, BENCH_PATH=path,
                   BENCH_SLOT_OFFSET=str(slot_offset))
        r = self.wrk(port, "create.lua", env, seconds=seconds)
        # The baseline stores any body: only unlockd's creates need fresh people.
        if r.get("wraps") and path == CREATE_PATH:
            self.notes.append(f"a create run used up its fresh (account, person) pairs {r['wraps']} time(s) "
                              f"and repeated ids after that: raise --people")
        return r

    def poll_run(self, port, keys, paths, seconds=None):
        env = dict(BENCH_KEYS=self.plan("keys.txt", keys), BENCH_PATHS=self.plan("paths.txt", paths))
        return self.wrk(port, "poll.lua", env, seconds=seconds)

    def interleaved(self, runs):
        """Runs each of `runs` (name -> function(seconds) -> wrk result) in turn, ROUNDS times,
        each for half a phase, so that the machine's drift (other work starting or stopping)
        falls on every side alike. Returns name -> combined result: requests and time summed,
        p50/p99/max the median, median and worst over the rounds."""
        half = max(1, self.args.seconds // 2)
        per_name = defaultdict(list)
        for _ in range(ROUNDS):
            for name, run in runs.items():
                per_name[name].append(run(half))
        combined = {}
        for name, results in per_name.items():
            def median(key):
                return sorted(r[key] for r in results)[len(results) // 2]
            requests = sum(r["requests"] for r in results)
            duration = sum(r["duration_us"] for r in results)
            combined[name] = dict(requests=requests, duration_us=duration, rate=requests / (duration / 1e6),
                                  p50_us=median("p50_us"), p99_us=median("p99_us"),
                                  max_us=max(r["max_us"] for r in results),
                                  errors_status=sum(r["errors_status"] for r in results),
                                  errors_socket=sum(r["errors_socket"] for r in results))
        return combined

    # ------------------------------------------------------------ baselines

    def baseline_fixed(self):
        server = Server([BASELINE_BIN, "fixed", "127.0.0.1:{port}"], os.environ,
                        os.path.join(self.work, "baseline.log"), "/fixed")
        try:
            r = self.poll_run(server.port, ["none"], ["0 /fixed"])
        finally:
            server.stop()
        return self.row("baseline: fixed JSON (axum)", "-", r, rss=server.peak_rss_mb())

    def baseline_insert(self, backend, blocks10):
        if backend.name == "sqlite":
            url = f"sqlite://{self.work}/baseline.db"
        else:
            url = backend.fresh_db("baseline")
        server = Server([BASELINE_BIN, backend.name, "127.0.0.1:{port}", url], os.environ,
                        os.path.join(self.work, "baseline.log"), "/fixed")
        try:
            r = self.create_run(server.port, ["none"], blocks10, path="/insert")
        finally:
            server.stop()
        label = ("baseline: 1 insert/request, WAL+FULL, 1 writer" if backend.name == "sqlite"
                 else "baseline: 1 insert/request, sync commit on")
        return self.row(label, backend.name, r, rss=server.peak_rss_mb())

    # ------------------------------------------------------------ unlockd scenarios

    def creates(self, backend, insert_rate):
        db = Database(backend, "main", self.args.people)
        blocks = {k: blocks_file(db.catalog, k) for k in (10, 100)}
        # Accounts of their own per size: the 100-blocks hold the same people as the 10-blocks.
        accounts = {k: (db.accounts(self.args.accounts, f"several{k}-"), db.accounts(1, f"single{k}-"))
                    for k in (10, 100)}
        server = unlockd(db, self.work, worker=False)
        peaks = {}
        try:
            for k in (10, 100):
                several, single = accounts[k]
                for keys, who in ((several, f"{len(several)} accounts"), (single, "1 account")):
                    r = self.create_run(server.port, keys, blocks[k])
                    peaks[(k, len(keys))] = r["rate"]
                    self.row(f"create {k} ids, {who}", backend.name, r,
                             baseline=("1-insert", insert_rate), verify=db.verify(), rss=server.peak_rss_mb())
        finally:
            server.stop()
        self.peak_rss[f"{backend.name} main"] = server.peak_rss_mb()
        return peaks

    def finished_tasks(self, port, key, blocks, count):
        """Creates `count` tasks and long-polls each until it is terminal; returns their ids."""
        ids = []
        for event, people in blocks[:count]:
            status, body = http_call(port, "POST", CREATE_PATH, key, {"event_id": event, "personnel_ids": people})
            if status != 201:
                raise SystemExit(f"create for the poll scenario answered {status}: {body}")
            ids.append(json.loads(body)["task_id"])
        for task in ids:
            for _ in range(10):
                status, body = http_call(port, "GET", f"{TASK_PATH}{task}?wait=30", key)
                if status == 200 and json.loads(body)["taskStatus"] in ("completed", "failed"):
                    break
            else:
                raise SystemExit(f"task {task} did not finish")
        return ids

    def drain_backlog(self, backend, db, blocks100, backlog_keys):
        """Creates the backlog with the worker off, then starts a server with its worker and
        measures how fast the backlog is settled. Returns that server, still running, and the
        backlog's (account index, task id) pairs."""
        server = unlockd(db, self.work, worker=False)
        backlog = []
        try:
            for i in range(self.args.backlog_tasks):
                key_index = i // len(blocks100)
                event, people = blocks100[i % len(blocks100)]
                status, body = http_call(server.port, "POST", CREATE_PATH, backlog_keys[key_index],
                                         {"event_id": event, "personnel_ids": people})
                if status != 201:
                    raise SystemExit(f"backlog create answered {status}: {body}")
                backlog.append((key_index, json.loads(body)["task_id"]))
        finally:
            server.stop()
        server = unlockd(db, self.work, worker=True)
        # One /metrics reading for the starting point (its unsettled-items gauge is a pass
        # over every live item: read often, it competed with the worker being measured),
        # then long polls, which cost the server nothing while they wait.
        status, body = http_call(server.port, "GET", "/metrics")
        m = re.search(r"^unlockd_unsettled_items (\d+)", body, re.M)
        if status != 200 or not m:
            server.stop()
            raise SystemExit(f"/metrics has no unlockd_unsettled_items: {status} {body[:300]}")
        first, t0 = int(m.group(1)), time.monotonic()
        deadline = time.time() + max(120, self.args.seconds * 10)
        # Tasks are claimed oldest first, so the newest finishes last or nearly; the others
        # are then checked, and any still running is waited for too.
        def finished(key_index, task, wait):
            status, body = http_call(server.port, "GET", f"{TASK_PATH}{task}{wait}", backlog_keys[key_index])
            return status == 200 and json.loads(body)["taskStatus"] in ("completed", "failed")

        unfinished = 0
        t1 = t0
        for position, (key_index, task) in enumerate(reversed(backlog)):
            if position > 0 and finished(key_index, task, ""):
                continue
            while time.time() < deadline and not finished(key_index, task, "?wait=30"):
                pass
            if time.time() >= deadline:
                unfinished += 1
            t1 = time.monotonic()
        rate = first / (t1 - t0) if t1 > t0 and unfinished == 0 else None
        note = f"{first:,} items left at the first reading" + ("" if unfinished == 0 else f"; {unfinished} tasks unfinished at the deadline")
        self.row(f"worker: backlog {self.args.backlog_tasks} tasks x 100", backend.name, None, unit="items/s",
                 rate=rate, verify=db.verify(), rss=server.peak_rss_mb(), note=note)
        return server, backlog

    def backlog_accounts(self, db, blocks100):
        return db.accounts(max(1, -(-self.args.backlog_tasks // len(blocks100))), "backlog")

    def worker_only(self, backend):
        db = Database(backend, "worker", SMALL_CATALOG)
        blocks100 = read_blocks(blocks_file(db.catalog, 100))
        server, _ = self.drain_backlog(backend, db, blocks100, self.backlog_accounts(db, blocks100))
        server.stop()

    def flow(self, backend, fixed_rate, create100_peak):
        db = Database(backend, "flow", SMALL_CATALOG)
        blocks10 = read_blocks(blocks_file(db.catalog, 10))
        blocks100_path = blocks_file(db.catalog, 100)
        blocks100 = read_blocks(blocks100_path)
        backlog_keys = self.backlog_accounts(db, blocks100)
        poll_key = db.accounts(1, "poll")[0]
        e2e_keys = db.accounts(self.args.e2e_connections, "e2e")

        # A backlog of tasks created with the worker off, then drained by the worker.
        server, backlog = self.drain_backlog(backend, db, blocks100, backlog_keys)
        try:
            # Polls of finished tasks: 100-item ones from the backlog, 10-item ones made now.
            ten = self.finished_tasks(server.port, poll_key, blocks10, 20)
            keys = backlog_keys + [poll_key]
            paths10 = [f"{len(keys) - 1} {TASK_PATH}{t}" for t in ten]
            paths100 = [f"{k} {TASK_PATH}{t}" for k, t in backlog[:20]]
            r10 = self.poll_run(server.port, keys, paths10)
            self.row("poll a finished 10-item task", backend.name, r10,
                                   baseline=("fixed JSON", fixed_rate), verify=db.verify(), rss=server.peak_rss_mb())
            r = self.poll_run(server.port, keys, paths100)
            self.row("poll a finished 100-item task", backend.name, r, baseline=("fixed JSON", fixed_rate),
                     verify=db.verify(), rss=server.peak_rss_mb())

            # End to end at half the peak create(100) rate, with the worker on.
            target = create100_peak / 2
            chains = self.args.e2e_connections
            period_ms = 1000 * chains / target if target > 0 else 1000
            env = dict(BENCH_KEYS=self.plan("keys.txt", e2e_keys), BENCH_BLOCKS=blocks100_path,
                       BENCH_PERIOD_MS=f"{period_ms:.3f}")
            r = self.wrk(server.port, "e2e.lua", env, connections=chains, threads=chains)
            seconds = r["duration_us"] / 1e6
            self.row("end to end: create 100 + long poll", backend.name, None, unit="tasks/s",
                     rate=r["chains"] / seconds, p50=float(r["chain_p50_ms"]), p99=float(r["chain_p99_ms"]),
                     max_=float(r["chain_max_ms"]), errors=r["unexpected"] + r["errors_socket"],
                     verify=db.verify(), rss=server.peak_rss_mb(),
                     note=f"offered {target:.0f} tasks/s (half the peak create-100 rate) over {chains} chains")
        finally:
            server.stop()
        self.peak_rss[f"{backend.name} flow"] = server.peak_rss_mb()

        # The access log: the same poll against two servers on this database at once, one at
        # UNLOCKD_LOG=warn and one at the default level (info: an access-log line per request).
        quiet = unlockd(db, self.work, worker=False)
        try:
            logging = unlockd(db, self.work, worker=False, log_level=None)
            try:
                runs = {
                    "warn": lambda sec: self.poll_run(quiet.port, keys, paths10, seconds=sec),
                    "info": lambda sec: self.poll_run(logging.port, keys, paths10, seconds=sec),
                }
                both = self.interleaved(runs)
            finally:
                logging.stop()
        finally:
            quiet.stop()
        verify = db.verify()
        self.row("poll 10, UNLOCKD_LOG=warn (interleaved)", backend.name, both["warn"], verify=verify,
                 rss=quiet.peak_rss_mb())
        self.row("access log cost: poll 10, default log (interleaved)", backend.name, both["info"],
                 baseline=("same at warn", both["warn"]["rate"]), verify=verify, rss=logging.peak_rss_mb())

    def probe_db(self, backend, people):
        """A fresh database of `people` people with 20 finished 10-item tasks to poll."""
        db = Database(backend, f"probe{people}", people)
        # Fresh (account, person) pairs for the create runs: at several thousand creates a
        # second of 10 ids, 16 accounts over 10,000 people ran out within a phase, and the
        # repeats (refused as errors) made the small catalog's p50 meaningless.
        keys = db.accounts(max(self.args.accounts, PROBE_ACCOUNTS), "probe")
        blocks10_path = blocks_file(db.catalog, 10)
        server = unlockd(db, self.work, worker=True)
        try:
            # The last blocks make the finished tasks; the create runs take slots from the front.
            ten = self.finished_tasks(server.port, keys[0], read_blocks(blocks10_path)[-20:], 20)
        finally:
            server.stop()
        return db, keys, blocks10_path, [f"0 {TASK_PATH}{t}" for t in ten]

    def catalog_rows(self, backend):
        sizes = [SMALL_CATALOG] + ([LARGE_CATALOG] if self.args.large else [])
        probes = {people: self.probe_db(backend, people) for people in sizes}
        servers = {}
        try:
            for people, (db, _, _, _) in probes.items():
                servers[people] = unlockd(db, self.work, worker=False)
            runs = {}
            next_slot = {people: 0 for people in sizes}

            def create(people):
                def run(sec):
                    _, keys, blocks, _ = probes[people]
                    r = self.create_run(servers[people].port, keys, blocks, slot_offset=next_slot[people], seconds=sec)
                    next_slot[people] = r["next_slot"]
                    return r
                return run

            def poll(people):
                return lambda sec: self.poll_run(servers[people].port, probes[people][1], probes[people][3], seconds=sec)

            for people in sizes:
                runs[("poll", people)] = poll(people)
                runs[("create", people)] = create(people)
            results = self.interleaved(runs)
        finally:
            for server in servers.values():
                server.stop()
        for people in sizes:
            db = probes[people][0]
            verify = db.verify()
            rss = servers[people].peak_rss_mb()
            self.peak_rss[f"{backend.name} {people:,} people"] = rss
            for what in ("create", "poll"):
                r = results[(what, people)]
                base = results[(what, SMALL_CATALOG)]
                self.row(f"catalog {people:,}: {what} 10 (interleaved)", backend.name, r, verify=verify, rss=rss,
                         note="" if people == SMALL_CATALOG else
                         f"p50 {r['p50_us'] / base['p50_us']:.2f} x the p50 at {SMALL_CATALOG:,}")
        if not self.args.large:
            self.notes.append("the 1,000,000-person catalog was skipped (run with --large)")

    # ------------------------------------------------------------ the table

    def table(self):
        def num(v, fmt):
            return "-" if v is None else format(v, fmt)

        lines = ["| scenario | backend | throughput | vs baseline | p50 ms | p99 ms | max ms | errors | ledger verify | peak RSS MB |",
                 "|---|---|---:|---|---:|---:|---:|---:|---|---:|"]
        for r in self.rows:
            ratio = f"{r['ratio']:.2f} x {r['baseline']}" if r["ratio"] is not None else "-"
            scenario = r["scenario"] + (f" ({r['note']})" if r["note"] else "")
            lines.append(f"| {scenario} | {r['backend']} | {num(r['rate'], ',.0f')} {r['unit']} | {ratio} | "
                         f"{num(r['p50'], '.2f')} | {num(r['p99'], '.2f')} | {num(r['max'], '.1f')} | "
                         f"{num(r['errors'], 'd')} | {r['verify'] or '-'} | {num(r['rss'], '.0f')} |")
        out = "\n".join(lines)
        if self.peak_rss:
            out += "\n\nPeak RSS (VmHWM) per server: " + ", ".join(
                f"{k} {v:.0f} MB" for k, v in self.peak_rss.items() if v is not None)
        for n in sorted(set(self.notes)):
            out += f"\n\nNote: {n}"
        return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    p.add_argument("--seconds", type=int, default=10, help="length of each load phase (default 10)")
    p.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    p.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    p.add_argument("--people", type=int, default=200_000,
                   help="catalog size for the create scenarios; fresh ids need about rate x seconds x 10 (default 200,000)")
    p.add_argument("--accounts", type=int, default=16, help="accounts in the 'several accounts' runs (default 16)")
    p.add_argument("--backlog-tasks", type=int, default=200, help="100-item tasks the worker drains (default 200)")
    p.add_argument("--e2e-connections", type=int, default=16, help="concurrent create+long-poll chains (default 16)")
    p.add_argument("--large", action="store_true", help="also measure a 1,000,000-person catalog (minutes to build)")
    p.add_argument("--only", default="creates,flow,catalog",
                   help="comma-separated parts to run after the baselines (default creates,flow,catalog); "
                        "'worker' alone drains the backlog without the rest of flow")
    p.add_argument("--postgres-url", default=os.environ.get("UNLOCKD_BENCH_POSTGRES_URL",
                                                             "postgres://postgres@127.0.0.1:5432/test"))
    args = p.parse_args()
    for path in (BIN, BASELINE_BIN):
        if not os.path.exists(path):
            raise SystemExit(f"missing {path}: run bench/run, which builds it")
    work = tempfile.mkdtemp(prefix="unlockd-bench-")
    bench = Bench(args, work)
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    started = time.time()
    try:
        log(f"work dir {work}; {args.seconds} s per phase, wrk -t{args.threads} -c{args.connections}")
        fixed_rate = bench.baseline_fixed()
        for name in backends:
            backend = Backend(name, work, args.postgres_url)
            try:
                blocks10 = blocks_file(catalog_dir(args.people), 10)
                insert_rate = bench.baseline_insert(backend, blocks10)
                parts = args.only.split(",")
                create100_peak = None
                if "creates" in parts:
                    peaks = bench.creates(backend, insert_rate)
                    create100_peak = max(v for (k, _), v in peaks.items() if k == 100)
                if "flow" in parts:
                    if create100_peak is None:
                        raise SystemExit("--only flow needs creates too (its end-to-end rate is half the create-100 peak)")
                    bench.flow(backend, fixed_rate, create100_peak)
                if "worker" in parts and "flow" not in parts:
                    bench.worker_only(backend)
                if "catalog" in parts:
                    bench.catalog_rows(backend)
            finally:
                backend.drop_all()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"unlockd benchmark, {time.strftime('%Y-%m-%d %H:%M %Z')}, {os.cpu_count()} CPUs, "
          f"{args.seconds} s per phase, wrk -t{args.threads} -c{args.connections}, "
          f"{args.accounts} accounts in 'several', main catalog {args.people:,} people, took {time.time() - started:.0f} s\n")
    print(bench.table())


if __name__ == "__main__":
    main()
