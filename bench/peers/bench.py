#!/usr/bin/env python3
"""keyguard next to Cloud Custodian and Prowler, on the same inputs, against one stand-in.

Started by run.sh (which installs the peers and builds keyguard); stdlib only. Everything talks
to one `keyguard sim` serving TLS with a throw-away CA on loopback:

* keyguard calls it directly (KEYGUARD_ARM_ENDPOINT=https://127.0.0.1:PORT, KEYGUARD_CA_BUNDLE)
  and takes its token from the stand-in's managed-identity endpoint;
* the peers, whose ARM host is fixed, reach it through the stand-in's CONNECT proxy
  (HTTPS_PROXY, REQUESTS_CA_BUNDLE) with a token the stand-in minted, given to Custodian through
  AZURE_ACCESS_TOKEN and to Prowler through a stand-in `az` on PATH (AzureCliCredential).

The stand-in's request log counts the ARM requests of each run. Prints one table and writes
results.json and table.md to the work directory.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
TENANT = "5b0c2f1e-7a3d-4c8e-9f61-2d4a8b6c0e17"  # azure-sim's default tenant
# One subscription per input set, so every tool sweeps exactly the same accounts.
SUB_EVENTS = "0e1e0000-0000-4000-8000-000000000200"


def sweep_subscription(n):
    """The subscription holding the sweep of n accounts."""
    return "0e1e0000-0000-4000-8000-%012d" % n
STORAGE = "Microsoft.Storage/storageAccounts"
PROWLER_CHECK = "storage_ensure_encryption_with_customer_managed_keys"
# A principal of the benchmark's own (a person, as AzureCliCredential would sign in).
PEER_PRINCIPAL = {"oid": "7c1f0a52-3b6e-4d0a-9c8e-5f2a1b3c4d5e", "appid": "04b07795-8ddb-461a-bbee-02f9e1bf7b46",
                  "name": "bench", "upn": "bench@keyguard-sim.onmicrosoft.com"}


def log(msg):
    print("== " + msg, file=sys.stderr, flush=True)


class Sim:
    """`keyguard sim --tls-dir`: plain port for its control API and MSI, TLS port, proxy."""

    def __init__(self, command, work):
        self.dir = os.path.join(work, "sim")
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        addr_file = os.path.join(self.dir, "plain.addr")
        self.log = open(os.path.join(work, "sim.log"), "w")
        self.proc = subprocess.Popen(command + ["--tls-dir", self.dir, "--addr-file", addr_file,
                                      "--list-page-size", "1000"],
                                     stdout=self.log, stderr=self.log, env={**os.environ, "RUST_LOG": "warn"})
        for _ in range(300):
            if os.path.exists(addr_file):
                break
            if self.proc.poll() is not None:
                sys.exit("keyguard sim exited; see %s/sim.log" % work)
            time.sleep(0.05)
        else:
            sys.exit("keyguard sim did not start")
        read = lambda name: open(os.path.join(self.dir, name)).read().strip()
        self.plain = "http://" + read("plain.addr")
        self.https = "https://" + read("https.addr")
        self.proxy = "http://" + read("proxy.addr")
        self.ca = os.path.join(self.dir, "ca.pem")

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.plain + path, data=data, method=method,
                                     headers={"content-type": "application/json"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(req, timeout=600) as r:
            raw = r.read()
        return json.loads(raw) if raw else None

    def requests(self):
        """ARM and Graph requests since the last clear, by kind (msi and keyvault apart)."""
        entries = self.call("GET", "/_sim/requests")
        self.call("DELETE", "/_sim/requests")
        kinds = {}
        for e in entries:
            kinds[e["kind"]] = kinds.get(e["kind"], 0) + 1
        arm = sum(v for k, v in kinds.items() if k not in ("msi", "keyvault"))
        errors = sum(1 for e in entries if e["status"] >= 400)
        return {"arm": arm, "by_kind": kinds, "errors": errors}

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def free_port():
    # The Functions host names the port the handler must bind, so a port has to be picked first.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def envelope(event):
    """What the Functions host POSTs to a custom handler for an Event Grid trigger."""
    return {"Data": {"eventGridEvent": event},
            "Metadata": {"data": event["data"], "sys": {"MethodName": "EncryptionDrift"}}}


def post(url, body, timeout=60):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"content-type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=timeout) as r:
        return r.status, r.read()


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p * (len(v) - 1))))]


def vm_hwm_mib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def timed_run(cmd, env, ok=(0,), cwd=None):
    """Runs a command; wall seconds and its peak RSS (MiB, from wait4's rusage)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=cwd)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    rc = os.waitstatus_to_exitcode(status)
    proc.returncode = rc
    if rc not in ok:
        sys.stderr.write(out.decode(errors="replace")[-4000:])
        raise RuntimeError("%s exited %d" % (cmd[0], rc))
    return wall, usage.ru_maxrss / 1024, out.decode(errors="replace")


class Keyguard:
    def __init__(self, binary, sim, work):
        self.binary, self.sim, self.work = binary, sim, work

    def env(self, state_dir):
        env = dict(os.environ)
        for k in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
            env.pop(k, None)
        env.update({
            "KEYGUARD_ARM_ENDPOINT": self.sim.https,
            "KEYGUARD_KEYVAULT_ENDPOINT": self.sim.https,
            "KEYGUARD_CA_BUNDLE": self.sim.ca,
            "KEYGUARD_AUTH": "managed-identity",
            "IDENTITY_ENDPOINT": self.sim.plain + "/msi/token",
            "IDENTITY_HEADER": "sim-identity-header",
            "KEYGUARD_STATE_PATH": os.path.join(state_dir, "state.redb"),
            "RUST_LOG": "warn",
        })
        return env

    def startup_log(self, name):
        """The start-up timings `keyguard serve` logs (see handler/src/startup.rs), by message."""
        found = {}
        with open(os.path.join(self.work, "keyguard-%s.log" % name)) as f:
            for line in f:
                try:
                    fields = json.loads(line).get("fields", {})
                except ValueError:
                    continue
                msg = fields.get("message")
                if msg in ("custom handler listening", "startup", "warm-up", "first event answered"):
                    found[msg] = fields
        return found

    def spawn(self, name):
        state = os.path.join(self.work, "keyguard-" + name)
        shutil.rmtree(state, ignore_errors=True)
        os.makedirs(state)
        port = free_port()
        logf = open(os.path.join(self.work, "keyguard-%s.log" % name), "w")
        start = time.perf_counter()
        # As the Functions host starts a custom handler: it names the port in the environment.
        env = {**self.env(state), "FUNCTIONS_CUSTOMHANDLER_PORT": str(port),
               "RUST_LOG": "warn,keyguard::startup=info,keyguard::cli::serve=info"}
        proc = subprocess.Popen([self.binary, "serve"], env=env, stdout=logf, stderr=logf)
        return proc, "http://127.0.0.1:%d/EncryptionDrift" % port, start

    def first_answer(self, url, event, proc):
        """POSTs until the handler answers; connection refused means it is not listening yet."""
        while True:
            try:
                status, _ = post(url, envelope(event), timeout=30)
                return status
            except (ConnectionRefusedError, urllib.error.URLError) as e:
                reason = getattr(e, "reason", e)
                if not isinstance(reason, ConnectionRefusedError):
                    raise
                if proc.poll() is not None:
                    raise RuntimeError("keyguard serve exited during start-up")
                time.sleep(0.0005)


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def peer_env(sim, token, sub, work):
    fakebin = os.path.join(work, "fakebin")
    os.makedirs(fakebin, exist_ok=True)
    az = os.path.join(fakebin, "az")
    # azure-identity's AzureCliCredential runs `az account get-access-token ...` and reads this JSON.
    with open(az, "w") as f:
        f.write("#!/bin/sh\ncase \"$*\" in\n  *get-access-token*) cat '%s' ;;\n"
                "  *) echo \"stand-in az: unsupported: $*\" >&2; exit 1 ;;\nesac\n"
                % os.path.join(work, "az-token.json"))
    os.chmod(az, 0o755)
    with open(os.path.join(work, "az-token.json"), "w") as f:
        json.dump({"accessToken": token, "expiresOn": "2099-01-01 00:00:00.000000", "expires_on": 4070908800,
                   "subscription": sub, "tenant": TENANT, "tokenType": "Bearer"}, f)
    env = dict(os.environ)
    env.update({
        "PATH": fakebin + os.pathsep + env.get("PATH", ""),
        "AZURE_ACCESS_TOKEN": token, "AZURE_SUBSCRIPTION_ID": sub, "AZURE_TENANT_ID": TENANT,
        "HTTPS_PROXY": sim.proxy, "https_proxy": sim.proxy,
        "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
        "REQUESTS_CA_BUNDLE": sim.ca, "SSL_CERT_FILE": sim.ca,
    })
    for k in ("AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"):
        env.pop(k, None)
    return env


def du_mib(path):
    out = subprocess.run(["du", "-sk", path], capture_output=True, text=True, check=True).stdout
    return int(out.split()[0]) / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keyguard", required=True)
    ap.add_argument("--c7n-venv", required=True)
    ap.add_argument("--prowler-venv", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--events", type=int, default=200)
    ap.add_argument("--cold-runs", type=int, default=10)
    ap.add_argument("--sweeps", default="1000,10000")
    ap.add_argument("--skip-prowler", action="store_true")
    ap.add_argument("--sim", help="the stand-in's command (default: KEYGUARD sim)")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    sizes = [int(s) for s in a.sweeps.split(",") if s]
    results = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count(),
               "load_before": os.getloadavg()[0]}

    sim = Sim(a.sim.split() if a.sim else [a.keyguard, "sim"], a.work)
    try:
        run(a, sim, sizes, results)
    finally:
        sim.stop()
    results["load_after"] = os.getloadavg()[0]
    with open(os.path.join(a.work, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    table = render(results)
    with open(os.path.join(a.work, "table.md"), "w") as f:
        f.write(table)
    print(table)


def seed(sim, sub, n, drift_every):
    report = sim.call("POST", "/_sim/seed/bulk", {"subscription": sub, "resourceGroups": max(1, n // 500),
                                                    "perType": {STORAGE: n}, "driftEvery": drift_every,
                                                    "expect": "cmk"})
    return report["drifted"]


def run(a, sim, sizes, results):
    log("seeding: %d MMK accounts for the events, sweeps of %s" % (a.events, sizes))
    # One account more than events: its event warms the process up before the timed run (an
    # event already handled would be a duplicate, answered without ARM).
    # Another as many for the burst of concurrent deliveries, so none of it is a duplicate.
    mmk = seed(sim, SUB_EVENTS, 2 * a.events + 1, 1)
    expected_drift = {}
    for n in sizes:
        expected_drift[n] = len(seed(sim, sweep_subscription(n), n, 2))
    # One harmless write per account, made as a person at the portal: the stand-in raises the
    # ResourceWriteSuccess event ARM would. Every tool gets these same events.
    for rid in mmk:
        sim.call("POST", "/_sim/act", {"id": rid, "principal": PEER_PRINCIPAL, "patch": {"tags": {"bench": "1"}}})
    wanted = {rid.lower() for rid in mmk}
    events = [e for e in sim.call("GET", "/_sim/events") if str(e.get("subject", "")).lower() in wanted]
    if len(events) != len(mmk):
        sys.exit("expected %d write events from the stand-in, got %d" % (len(mmk), len(events)))
    warmup, events, burst = events[-1], events[: a.events], events[a.events : 2 * a.events]
    events_file = os.path.join(a.work, "events.json")
    with open(events_file, "w") as f:
        json.dump(events, f)
    token = sim.call("POST", "/_sim/token", {**PEER_PRINCIPAL})["access_token"]
    sim.requests()

    kg = Keyguard(a.keyguard, sim, a.work)
    c7n_py = os.path.join(a.c7n_venv, "bin", "python")
    env_events = peer_env(sim, token, SUB_EVENTS, a.work)

    # --- cold start: spawn -> first event answered, fresh state each time.
    log("cold start: keyguard serve, %d runs" % a.cold_runs)
    cold, parts = [], []
    for i in range(a.cold_runs):
        proc, url, start = kg.spawn("cold")
        status = kg.first_answer(url, events[i % len(events)], proc)
        cold.append(time.perf_counter() - start)
        stop(proc)
        assert status == 200, status
        logged = kg.startup_log("cold")
        parts.append({
            "listening_ms": logged["custom handler listening"]["since_start_ms"],
            "state_ready_ms": logged["startup"]["listen_ms"] + logged["startup"]["state_ms"],
            "store_open_ms": logged["startup"]["store_open_ms"],
            "token_ms": logged["warm-up"]["token_ms"],
            "tls_connect_ms": logged["warm-up"]["connect_ms"],
            "first_answer_ms": logged["first event answered"]["since_start_ms"],
            "first_handling_ms": logged["first event answered"]["handling_ms"],
        })
    results["keyguard_cold_ms"] = [c * 1000 for c in cold]
    results["keyguard_cold_parts"] = {k: statistics.median(p[k] for p in parts) for k in parts[0]}
    sim.requests()
    log("cold start: c7n one event per fresh process, %d runs" % min(a.cold_runs, 5))
    c7n_cold = []
    for i in range(min(a.cold_runs, 5)):
        start = time.perf_counter()
        proc = subprocess.Popen([c7n_py, os.path.join(HERE, "c7n_event.py"), "--events", events_file,
                                 "--limit", "1", "--workdir", os.path.join(a.work, "c7n-cold")],
                                env=env_events, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = proc.stdout.readline()
        c7n_cold.append(time.perf_counter() - start)
        proc.wait()
        if line.strip() != "answered":
            raise RuntimeError("c7n cold run did not answer: %r" % line)
    results["c7n_cold_ms"] = [c * 1000 for c in c7n_cold]
    sim.requests()

    # --- warm: 200 events in one process.
    log("warm: keyguard, %d events then %d concurrent" % (len(events), len(events)))
    proc, url, _ = kg.spawn("warm")
    kg.first_answer(url, warmup, proc)
    hwm_after_first = vm_hwm_mib(proc.pid)
    sim.requests()
    lat = []
    for e in events:
        t = time.perf_counter()
        status, _ = post(url, envelope(e))
        lat.append(time.perf_counter() - t)
        assert status == 200, status
    reqs = sim.requests()
    hwm_sequential = vm_hwm_mib(proc.pid)
    with ThreadPoolExecutor(max_workers=len(burst)) as pool:
        statuses = list(pool.map(lambda e: post(url, envelope(e))[0], burst))
    assert all(s == 200 for s in statuses), statuses
    sim.requests()
    results["keyguard_warm"] = {"median_ms": statistics.median(lat) * 1000, "p95_ms": pct(lat, 0.95) * 1000,
                                "arm_per_event": reqs["arm"] / len(events), "requests": reqs,
                                "vm_hwm_first_mib": hwm_after_first, "vm_hwm_sequential_mib": hwm_sequential,
                                "vm_hwm_mib": vm_hwm_mib(proc.pid)}
    stop(proc)

    log("warm: c7n handler.run, %d events in one process" % len(events))
    wall, rss, out = timed_run([c7n_py, os.path.join(HERE, "c7n_event.py"), "--events", events_file,
                                "--limit", str(len(events)), "--workdir", os.path.join(a.work, "c7n-warm")],
                               env_events)
    inner = json.loads(out.strip().splitlines()[-1])
    reqs = sim.requests()
    results["c7n_warm"] = {"events": len(events), "median_ms": inner["warm_median_ms"], "p95_ms": inner["warm_p95_ms"],
                           "arm_per_event": reqs["arm"] / len(events), "requests": reqs, "peak_rss_mib": rss}

    # --- sweeps.
    for n in sizes:
        sub = sweep_subscription(n)
        env = peer_env(sim, token, sub, a.work)
        row = {"expected_drift": expected_drift[n]}
        for listing in ("arm", "resource-graph"):
            log("sweep %d: keyguard scan --listing %s" % (n, listing))
            out_file = os.path.join(a.work, "scan-%d-%s.json" % (n, listing))
            wall, rss, _ = timed_run([a.keyguard, "scan", "--subscription", sub, "--type", STORAGE,
                                      "--require", "cmk", "--listing", listing, "--format", "json",
                                      "--output", out_file], kg.env(os.path.join(a.work, "keyguard-warm")),
                                     ok=(0, 1))
            reqs = sim.requests()
            row["keyguard_" + listing] = {"wall_s": wall, "peak_rss_mib": rss, "requests": reqs,
                                          "drift": count_keyguard_drift(out_file)}
        log("sweep %d: custodian run (pull)" % n)
        policy = os.path.join(a.work, "c7n-pull.yml")
        with open(policy, "w") as f:
            f.write("policies:\n  - name: storage-cmk\n    resource: azure.storage\n    filters:\n"
                    "      - type: value\n        key: properties.encryption.keySource\n"
                    "        op: ne\n        value: Microsoft.Keyvault\n")
        out_dir = os.path.join(a.work, "c7n-pull-%d" % n)
        shutil.rmtree(out_dir, ignore_errors=True)
        wall, rss, _ = timed_run([os.path.join(a.c7n_venv, "bin", "custodian"), "run", "-s", out_dir, policy], env)
        with open(os.path.join(out_dir, "storage-cmk", "resources.json")) as f:
            found = len(json.load(f))
        row["c7n"] = {"wall_s": wall, "peak_rss_mib": rss, "requests": sim.requests(), "drift": found}
        if not a.skip_prowler:
            log("sweep %d: prowler azure --checks %s" % (n, PROWLER_CHECK))
            out_dir = os.path.join(a.work, "prowler-%d" % n)
            shutil.rmtree(out_dir, ignore_errors=True)
            wall, rss, _ = timed_run([os.path.join(a.prowler_venv, "bin", "prowler"), "azure", "--az-cli-auth",
                                      "--subscription-ids", sub, "--checks", PROWLER_CHECK, "-M", "json-ocsf",
                                      "-F", "check", "--output-directory", out_dir, "--no-banner", "--no-color",
                                      "--log-level", "ERROR"], env, ok=(0, 3))
            with open(os.path.join(out_dir, "check.ocsf.json")) as f:
                fails = sum(1 for x in json.load(f) if x.get("status_code") == "FAIL")
            row["prowler"] = {"wall_s": wall, "peak_rss_mib": rss, "requests": sim.requests(), "drift": fails}
        results["sweep_%d" % n] = row

    results["install"] = {"keyguard_binary_mib": os.path.getsize(a.keyguard) / 2**20,
                          "c7n_venv_mib": du_mib(a.c7n_venv), "prowler_venv_mib": du_mib(a.prowler_venv)}


def count_keyguard_drift(path):
    with open(path) as f:
        report = json.load(f)
    findings = report.get("findings", report) if isinstance(report, dict) else report
    return sum(1 for x in findings if str(x.get("verdict", "")).lower() in ("drift", "drifted", "noncompliant"))


def render(r):
    def ratio(ours, theirs):
        return "%.3f" % (ours / theirs) if theirs else "n/a"

    rows = []
    kc, cc = statistics.median(r["keyguard_cold_ms"]), statistics.median(r["c7n_cold_ms"])
    rows.append(("cold start: spawn -> first event answered (median)", "%.1f ms" % kc,
                 "c7n, one event per fresh process: %.0f ms" % cc, ratio(kc, cc)))
    p = r["keyguard_cold_parts"]
    rows.append(("keyguard cold start, inside the process (medians, ms from main)",
                 "listening %.1f; state ready %.1f (store open %.1f of it); token %.1f and TLS to ARM %.1f "
                 "(background, from when the clients were built); first event answered %.1f, handling %.1f"
                 % (p["listening_ms"], p["state_ready_ms"], p["store_open_ms"], p["token_ms"], p["tls_connect_ms"],
                    p["first_answer_ms"], p["first_handling_ms"]), "", ""))
    kw, cw = r["keyguard_warm"], r["c7n_warm"]
    rows.append(("warm per event, median / p95", "%.2f / %.2f ms" % (kw["median_ms"], kw["p95_ms"]),
                 "c7n handler.run: %.1f / %.1f ms" % (cw["median_ms"], cw["p95_ms"]),
                 ratio(kw["median_ms"], cw["median_ms"])))
    rows.append(("ARM requests per event", "%.2f" % kw["arm_per_event"], "c7n: %.2f" % cw["arm_per_event"],
                 ratio(kw["arm_per_event"], cw["arm_per_event"])))
    rows.append(("peak RSS, event path: VmHWM after the first event / the %d events / %d more new events at once"
                 % (cw.get("events", 200), cw.get("events", 200)),
                 "%.1f / %.1f / %.1f MiB" % (kw["vm_hwm_first_mib"], kw["vm_hwm_sequential_mib"], kw["vm_hwm_mib"]),
                 "c7n, %d events: %.1f MiB" % (cw.get("events", 200), cw["peak_rss_mib"]),
                 ratio(kw["vm_hwm_mib"], cw["peak_rss_mib"])))
    for key in sorted(k for k in r if k.startswith("sweep_")):
        n = int(key.split("_")[1])
        s = r[key]
        for listing, label in (("keyguard_arm", "ARM list"), ("keyguard_resource-graph", "Resource Graph")):
            k = s[listing]
            peers = [("custodian run", s["c7n"])] + ([("prowler", s["prowler"])] if "prowler" in s else [])
            for name, p in peers:
                rows.append(("sweep %d accounts, keyguard via %s vs %s: wall" % (n, label, name),
                             "%.2f s (%d req, %d drift)" % (k["wall_s"], k["requests"]["arm"], k["drift"]),
                             "%.2f s (%d req, %d drift)" % (p["wall_s"], p["requests"]["arm"], p["drift"]),
                             ratio(k["wall_s"], p["wall_s"])))
                rows.append(("sweep %d accounts, keyguard via %s vs %s: peak RSS" % (n, label, name),
                             "%.1f MiB" % k["peak_rss_mib"], "%.1f MiB" % p["peak_rss_mib"],
                             ratio(k["peak_rss_mib"], p["peak_rss_mib"])))
    i = r["install"]
    rows.append(("install size vs c7n venv", "%.1f MiB" % i["keyguard_binary_mib"], "%.0f MiB" % i["c7n_venv_mib"],
                 ratio(i["keyguard_binary_mib"], i["c7n_venv_mib"])))
    rows.append(("install size vs prowler venv", "%.1f MiB" % i["keyguard_binary_mib"],
                 "%.0f MiB" % i["prowler_venv_mib"], ratio(i["keyguard_binary_mib"], i["prowler_venv_mib"])))
    out = ["%s, %s CPUs, load average %.1f before and %.1f after" % (
               r["date"], r["cpus"], r["load_before"], r.get("load_after", float("nan"))), "",
           "| measure | keyguard | peer | ratio keyguard/peer |", "|---|---|---|---|"]
    out += ["| %s | %s | %s | %s |" % row for row in rows]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
