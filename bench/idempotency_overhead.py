#!/usr/bin/env python3
"""Sequential create latency with and without Idempotency-Key against a running
unlockd (`unlockd serve --demo`): usage: idempotency_overhead.py HOST PORT API_KEY.
Uses event 139574 of the demo catalog; each create unlocks one new person (15 credits)."""
import http.client, json, time, statistics, sys, uuid
host, port = sys.argv[1], int(sys.argv[2]); key = sys.argv[3]
c = http.client.HTTPConnection(host, port)
H = {"Authorization": "Bearer " + key, "Content-Type": "application/json"}
def get(p):
    c.request("GET", p, headers=H); r = c.getresponse(); return r.status, json.loads(r.read())
ids = []
page = 1
while len(ids) < 1200:
    s, b = get(f"/external/personnel/list?event_id=139574&page={page}&pageSize=50")
    if s != 200 or not b.get("items"): break
    ids += [p["id"] for p in b["items"]]; page += 1
print("ids", len(ids), "balance", get("/external/credits/balance")[1].get("availableCredits"))
def run(batch, keyed):
    lat = []
    for pid in batch:
        h = dict(H)
        if keyed: h["Idempotency-Key"] = str(uuid.uuid4())
        t = time.perf_counter()
        c.request("POST", "/external/contacts/unlock", body=json.dumps({"event_id": "139574", "personnel_ids": [pid]}), headers=h)
        r = c.getresponse(); r.read()
        lat.append((time.perf_counter() - t) * 1000)
        assert r.status == 201, r.status
    lat.sort()
    return statistics.median(lat), lat[int(len(lat) * .95)]
n = len(ids) // 4
for name, batch, keyed in [("plain", ids[:n], False), ("keyed", ids[n:2*n], True), ("plain", ids[2*n:3*n], False), ("keyed", ids[3*n:4*n], True)]:
    med, p95 = run(batch, keyed)
    print(f"{name}: {len(batch)} sequential creates, median {med:.2f} ms, p95 {p95:.2f} ms")
