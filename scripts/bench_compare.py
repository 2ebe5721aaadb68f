"""skuflow beside what users would build instead, behind the same HTTP layer, open loop.

Started by scripts/bench-compare, which installs and builds what this needs. It starts:
- skuflow: the dev broker (`skuflow broker`) and `skuflow up --brokers` (processor and
  API in one process) on it;
- Redis (AOF, appendfsync everysec) with `skuflow-baseline serve --backend redis`;
- PostgreSQL (synchronous commit on, fsync on) with `skuflow-baseline serve --backend
  postgres`;
one system at a time, freshly started for each ladder and stopped after it, and sends it
open-loop load (`skuflow-baseline load`) at fixed rates: reserves spread over many SKUs
and on one hot SKU, and reads. For every run it records the
latency percentiles and, from /proc, the CPU time of every process of the system under
test (the load generator excluded) divided by the commands answered. It writes a JSON
file with every run, a Markdown table and the plots.
"""

import argparse
import hashlib
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(what, check, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")


def log_has(path, marker):
    try:
        return marker in open(path).read()
    except FileNotFoundError:
        return False


def processes():
    """pid -> (ppid, comm, cpu seconds incl. waited-for children)."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = open(f"/proc/{entry}/stat").read()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        ppid = int(fields[1])
        utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
        out[int(entry)] = (ppid, comm, (utime + stime + cutime + cstime) / CLK_TCK)
    return out


def tree_cpu(roots):
    """CPU seconds of each process in the trees under `roots` (name -> seconds)."""
    procs = processes()
    children = {}
    for pid, (ppid, _, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    by_name = {}
    stack = [(r, name) for name, r in roots.items()]
    while stack:
        pid, name = stack.pop()
        if pid not in procs:
            continue
        _, comm, cpu = procs[pid]
        label = name if pid in roots.values() else f"{name}/{comm}"
        by_name[label] = by_name.get(label, 0.0) + cpu
        stack.extend((c, name) for c in children.get(pid, []))
    return by_name


class System:
    def __init__(self, name, url, roots, key, trivial_path="/trivial"):
        self.name, self.url, self.roots, self.key = name, url, roots, key
        # The server's cheapest handler: the ceiling its reads are compared with.
        self.trivial_path = trivial_path


def start(cmd, log, **kw):
    return subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, **kw)


def sha(key):
    return hashlib.sha256(key.encode()).hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--skuflow", required=True)
    ap.add_argument("--baseline", required=True)
    ap.add_argument("--out", required=True, help="directory for results.json, table.md, plots")
    ap.add_argument("--rates", default="250,500,1000,1500,2000,3000,5000,7500,10000")
    ap.add_argument("--read-rates", default="1000,2000,5000,7500,10000,20000")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--skus", type=int, default=1000)
    ap.add_argument("--systems", default="skuflow,redis,postgres")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="bench-compare-")
    os.chmod(work, 0o755)
    key = "bench-client-key"
    admin = "bench-admin-key"
    keys = [f"bench:client:{sha(key)}", f"bench:admin:{sha(admin)}"]
    wanted = args.systems.split(",")
    results = []
    try:
        # Every ladder on a freshly started system: the dev broker's cost grows with the
        # data it holds (BROKERS.md), so a ladder run after another would carry the
        # earlier ladders' data; the baselines are restarted the same way.
        for name in wanted:
            for kind, mode, rates, skus in ladders(args, name):
                started = []
                dir = f"{work}/{name}-{mode}"
                os.makedirs(dir)
                os.chmod(dir, 0o755)
                try:
                    system = start_system(name, args, dir, started, keys, key, admin)
                    results += ladder(args, system, kind, mode, rates, skus)
                finally:
                    stop(started)
        meta = {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "cpus": os.cpu_count(),
            "cpu_model": cpu_model(),
            "duration_s": args.duration,
            "skus_spread": args.skus,
        }
        json.dump({"meta": meta, "runs": results}, open(f"{args.out}/results.json", "w"), indent=1)
        print(f"wrote {args.out}/results.json")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def stop(procs):
    for p in reversed(procs):
        p.terminate()
    for p in reversed(procs):
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def start_system(name, args, work, procs, keys, key, admin):
    """Start system `name` (its processes go into `procs`) and return it, ready."""
    if name == "skuflow":
        bport, aport, mport = free_port(), free_port(), free_port()
        broker = start([args.skuflow, "broker", "--port", str(bport), "--data-dir", f"{work}/broker"],
                       f"{work}/broker.log")
        procs.append(broker)
        wait_for("the dev broker", lambda: log_has(f"{work}/broker.log", "dev broker ready"))
        cmd = [args.skuflow, "up", "--brokers", f"127.0.0.1:{bport}", "--partitions", "4",
               "--bind", f"127.0.0.1:{aport}", "--metrics-addr", f"127.0.0.1:{mport}",
               "--data-dir", f"{work}/store", "--rate", "1000000", "--burst", "1000000",
               "--max-in-flight", "1000000", "--max-connections-per-address", "100000",
               "--max-connections", "100000"]
        for k in keys:
            cmd += ["--api-key", k]
        up = start(cmd, f"{work}/up.log")
        procs.append(up)
        wait_for("skuflow up", lambda: log_has(f"{work}/up.log", "skuflow is up"))
        url = f"http://127.0.0.1:{aport}"
        seed_skuflow(url, admin, args.skus)
        return System("skuflow", url, {"broker": broker.pid, "skuflow-up": up.pid}, key, "/healthz")
    if name == "redis":
        rport = free_port()
        os.makedirs(f"{work}/redis", exist_ok=True)
        redis = start(["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--dir", f"{work}/redis",
                       "--appendonly", "yes", "--appendfsync", "everysec", "--save", ""],
                      f"{work}/redis.log")
        procs.append(redis)
        wait_for("redis", lambda: log_has(f"{work}/redis.log", "Ready to accept connections"))
        return baseline(args, work, procs, "redis", f"redis://127.0.0.1:{rport}/", keys, key,
                        {"redis-server": redis.pid})
    if name == "postgres":
        pport = free_port()
        pgdir = f"{work}/pg"
        os.makedirs(pgdir)
        shutil.chown(pgdir, "postgres", "postgres")
        bindir = subprocess.check_output(["pg_config", "--bindir"], text=True).strip()
        as_pg = ["runuser", "-u", "postgres", "--"]
        subprocess.check_call(as_pg + [f"{bindir}/initdb", "-D", pgdir, "--auth=trust", "-U", "postgres"],
                              stdout=subprocess.DEVNULL)
        pg = start(as_pg + [f"{bindir}/postgres", "-D", pgdir, "-p", str(pport), "-k", pgdir,
                            "-c", "listen_addresses=127.0.0.1", "-c", "synchronous_commit=on",
                            "-c", "fsync=on", "-c", "max_connections=200", "-c", "shared_buffers=256MB"],
                   f"{work}/postgres.log")
        procs.append(pg)
        wait_for("postgres", lambda: log_has(f"{work}/postgres.log", "ready to accept connections"))
        pg_pid = int(open(f"{pgdir}/postmaster.pid").readline())
        return baseline(args, work, procs, "postgres",
                        f"host=127.0.0.1 port={pport} user=postgres dbname=postgres", keys, key,
                        {"postgres": pg_pid})
    raise SystemExit(f"unknown system {name}")


def ladder(args, system, kind, mode, rates, skus):
    """Runs at increasing rates until the system saturates."""
    out = []
    for rate in rates:
        r = run_load(args, system, kind, rate, skus, f"{system.name}-{mode}-{rate}-{time.time_ns()}")
        r.update(system=system.name, mode=mode)
        out.append(r)
        print(summary_line(r), flush=True)
        if saturated(r):
            break
    return out


def ladders(args, name):
    """(kind, mode, rates, skus) of every ladder system `name` runs."""
    rates = [int(r) for r in args.rates.split(",")]
    read_rates = [int(r) for r in args.read_rates.split(",")]
    out = [("reserve", "spread", rates, args.skus), ("reserve", "hot", rates, 1),
           ("read", "read", read_rates, args.skus)]
    # The same server's empty handler (skuflow's /healthz, the baseline server's /trivial,
    # shared by Redis and PostgreSQL): what a read costs beyond the HTTP layer.
    if name in ("skuflow", "redis"):
        out.append(("trivial", "trivial", read_rates, args.skus))
    return out


def cpu_model():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def baseline(args, work, procs, backend, url, keys, key, roots):
    port = free_port()
    cmd = [args.baseline, "serve", "--backend", backend, "--url", url, "--bind", f"127.0.0.1:{port}",
           "--skus", str(args.skus), "--stock", "1000000000"]
    for k in keys:
        cmd += ["--api-key", k]
    server = start(cmd, f"{work}/baseline-{backend}.log")
    procs.append(server)
    wait_for(f"the {backend} baseline", lambda: log_has(f"{work}/baseline-{backend}.log", "baseline listening"))
    return System(backend, f"http://127.0.0.1:{port}", {**roots, "http-layer": server.pid}, key)


def seed_skuflow(url, admin, skus):
    """Stock every SKU through the admin API: 10,000 units each (the largest restock),
    and 500,000 for sku-0, the hot one, so that no run runs out."""
    restocks = [(i, f"seed-{i}") for i in range(skus)] + [(0, f"seed-hot-{j}") for j in range(50)]
    for i, key in restocks:
        req = urllib.request.Request(
            f"{url}/v1/admin/stock/sku-{i}/main/restock?wait=30000",
            data=json.dumps({"quantity": 10_000}).encode(),
            headers={"X-Api-Key": admin, "Idempotency-Key": key, "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=60) as r:
            if r.status != 200:
                raise SystemExit(f"restock sku-{i}: {r.status}")


def run_load(args, system, kind, rate, skus, run):
    before = tree_cpu(system.roots)
    generator_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.check_output(
        [args.baseline, "load", "--url", system.url, "--kind", kind, "--rate", str(rate),
         "--duration-s", str(args.duration), "--skus", str(skus), "--run", run,
         "--trivial-path", system.trivial_path],
        env={**os.environ, "BENCH_API_KEY": system.key}, text=True)
    after = tree_cpu(system.roots)
    generator_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = json.loads(out)
    r["generator_cpu_s"] = round(
        generator_after.ru_utime + generator_after.ru_stime - generator_before.ru_utime - generator_before.ru_stime, 3)
    answered = max(r["ok"] + r["rejected"], 1)
    cpu = {name: after.get(name, 0.0) - before.get(name, 0.0) for name in after}
    r["cpu_s"] = {k: round(v, 3) for k, v in cpu.items() if v > 0.005}
    r["cpu_us_per_command"] = round(sum(cpu.values()) / answered * 1e6, 1)
    drain(args, system, kind, skus)
    return r


def drain(args, system, kind, skus):
    """Waits until the system has worked off what a run left queued (skuflow keeps a
    saturated run's commands in Kafka and answers them afterwards): 1 s probes at 20/s
    until one has p99 <= 50 ms, for at most 120 s. Not measured."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        out = subprocess.check_output(
            [args.baseline, "load", "--url", system.url, "--kind", kind, "--rate", "20",
             "--duration-s", "1", "--skus", str(skus), "--run", f"drain-{time.time_ns()}",
             "--trivial-path", system.trivial_path],
            env={**os.environ, "BENCH_API_KEY": system.key}, text=True)
        if json.loads(out)["p99_ms"] <= 50:
            return
    print(f"{system.name}: still slow 120 s after a run", flush=True)


def saturated(r):
    return r["p99_ms"] > 2000 or r["achieved_rate"] < 0.8 * r["offered_rate"] or r["errors"] > 0.01 * max(r["sent"], 1)


def summary_line(r):
    return (f"{r['system']:>10} {r['mode']:>7} {r['offered_rate']:>7.0f}/s -> {r['achieved_rate']:>7.0f}/s "
            f"p50 {r['p50_ms']:7.1f} p99 {r['p99_ms']:7.1f} p99.9 {r['p999_ms']:7.1f} ms  "
            f"ok {r['ok']} rej {r['rejected']} err {r['errors']} drop {r['dropped']}  "
            f"cpu/cmd {r['cpu_us_per_command']} us {r['cpu_s']}")


if __name__ == "__main__":
    sys.exit(main())
