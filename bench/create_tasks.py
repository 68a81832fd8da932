#!/usr/bin/env python3
"""Write-path throughput: creating unlock tasks of 10 people, against baselines measured
in the same run on the same server and client.

Usage: bench/create_tasks.py [--seconds 10] [--clients 16] [--database-url URL]
Run `cargo build --release` first. Talks only to 127.0.0.1; every phase is bounded in
time. Phases, each with the same client threads and keep-alive connections:
  healthz      GET /healthz (no database)
  balance      GET /external/credits/balance (auth + one indexed read)
  create-1     POST /external/contacts/unlock with 1 new person (auth + classify + hold + insert)
  create-10    the same with 10 new people per task
Each create uses people nobody has asked for yet, so every request does the full write.
The worker is off (--no-worker) so only the create path is measured.
"""
import argparse, http.client, json, os, re, shutil, subprocess, sys, tempfile, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "unlockd")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--personnel", type=int, default=400_000)
    p.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    p.add_argument("--synchronous", default="full", choices=["full", "normal"])
    p.add_argument("--accounts", type=int, default=1, help="spread the clients over this many accounts")
    a = p.parse_args()
    if not os.path.exists(BIN):
        sys.exit("build first: cargo build --release")
    work = tempfile.mkdtemp(prefix="unlockd-bench-")
    db = a.database_url or f"sqlite://{work}/bench.db"
    if db.startswith("postgres"):
        # A fresh database on that server, dropped at the end.
        server_url, _, _ = db.rpartition("/")
        name = f"unlockd_bench_{os.getpid()}"
        subprocess.run(["psql", db, "-qc", f"CREATE DATABASE {name}"], check=True)
        db = f"{server_url}/{name}"
    env = dict(os.environ, UNLOCKD_DATABASE_URL=db, UNLOCKD_LOG="warn", UNLOCKD_SQLITE_SYNCHRONOUS=a.synchronous)
    # One event holding every person, so any id is linked and chargeable.
    with open(f"{work}/events.csv", "w") as f:
        f.write("id,event_id,name\nB1,B1,Bench\n")
    with open(f"{work}/people.csv", "w") as f:
        f.write("id,event_ids,email\n")
        for i in range(a.personnel):
            f.write(f"{i},B1,p{i}@bench.example\n")
    subprocess.run([BIN, "import", "--events", f"{work}/events.csv", "--personnel", f"{work}/people.csv"],
                   env=env, check=True, capture_output=True)
    keys = []
    for n in range(a.accounts):
        out = subprocess.run([BIN, "admin", "accounts", "create", "--name", f"bench{n}", "--credits", "1000000000", "--json"],
                             env=env, check=True, capture_output=True, text=True).stdout
        keys.append(json.loads(out)["api_key"])
    log = open(f"{work}/server.log", "w")
    server = subprocess.Popen([BIN, "serve", "--no-worker", "--listen", "127.0.0.1:0", "--rate-limit-per-minute", "0",
                               "--ip-rate-limit-per-minute", "0", "--log-format", "json"],
                              env=dict(env, UNLOCKD_LOG="warn,unlockd::cli=info"), stderr=log)
    try:
        url = None
        deadline = time.time() + 60
        while url is None and time.time() < deadline:
            m = re.search(r'"url":"http://([^"]+)"', open(f"{work}/server.log").read())
            url = m.group(1) if m else None
            time.sleep(0.1)
        host, port = url.split(":")
        next_person = [0]
        lock = threading.Lock()

        def take(n):
            with lock:
                start = next_person[0]
                next_person[0] += n
            if start + n > a.personnel:
                raise SystemExit("ran out of fresh people: raise --personnel")
            return [str(i) for i in range(start, start + n)]

        def phase(name, method, path, people):
            counts = {"ok": 0, "other": 0}
            stop = time.time() + a.seconds
            latencies = []

            def client(key):
                conn = http.client.HTTPConnection(host, int(port), timeout=30)
                mine, ok, other = [], 0, 0
                while time.time() < stop:
                    body = None
                    headers = {"Authorization": f"Bearer {key}"}
                    if people:
                        body = json.dumps({"event_id": "B1", "personnel_ids": take(people)})
                        headers["Content-Type"] = "application/json"
                    t = time.perf_counter()
                    conn.request(method, path, body=body, headers=headers)
                    r = conn.getresponse()
                    r.read()
                    mine.append(time.perf_counter() - t)
                    if r.status in (200, 201):
                        ok += 1
                    else:
                        other += 1
                with lock:
                    counts["ok"] += ok
                    counts["other"] += other
                    latencies.extend(mine)

            threads = [threading.Thread(target=client, args=(keys[i % len(keys)],)) for i in range(a.clients)]
            started = time.time()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.time() - started
            latencies.sort()
            rate = counts["ok"] / elapsed
            p50 = latencies[len(latencies) // 2] * 1000 if latencies else 0
            p99 = latencies[int(len(latencies) * 0.99)] * 1000 if latencies else 0
            return name, rate, p50, p99, counts["other"]

        results = [
            phase("healthz", "GET", "/healthz", 0),
            phase("balance", "GET", "/external/credits/balance", 0),
            phase("create-1", "POST", "/external/contacts/unlock", 1),
            phase("create-10", "POST", "/external/contacts/unlock", 10),
        ]
        backend = "postgres" if db.startswith("postgres") else f"sqlite synchronous={a.synchronous}"
        print(f"backend: {backend}; {a.clients} clients over {a.accounts} account(s), {a.seconds:.0f} s per phase")
        print(f"{'phase':10} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} {'x balance':>10}")
        base = results[1][1]
        for name, rate, p50, p99, other in results:
            print(f"{name:10} {rate:9.0f} {p50:8.2f} {p99:8.2f} {other:8d} {rate / base:10.2f}")
        verify = subprocess.run([BIN, "admin", "ledger", "verify"], env=env, capture_output=True, text=True)
        print("ledger verify:", verify.stdout.strip() or verify.stderr.strip())
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
        if db.startswith("postgres"):
            subprocess.run(["psql", a.database_url, "-qc", f"DROP DATABASE IF EXISTS {db.rpartition('/')[2]} WITH (FORCE)"])


if __name__ == "__main__":
    main()
