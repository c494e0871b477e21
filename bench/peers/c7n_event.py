"""Cloud Custodian's Azure event-mode handler, driven in-process, one Event Grid event at a time.

This is the call the Custodian Function App makes per queue message
(c7n_azure/function.py -> c7n_azure.handler.run(event, context, subscription_id)), without the
Functions host and the queue. Its ARM reads are real HTTPS requests: HTTPS_PROXY sends them to
the stand-in. Runs under the c7n virtualenv's python; prints one JSON line at the end.

--limit 1 in a fresh process is the cold start: the line "answered" goes to stdout the moment the
first event returns, so the parent can time spawn -> first event answered.
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

from c7n_azure import entry, handler
from c7n_azure.utils import ResourceIdParser

entry.initialize_azure()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", required=True, help="JSON array of Event Grid events")
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--workdir", required=True)
    a = ap.parse_args()

    os.makedirs(a.workdir, exist_ok=True)
    # The same check keyguard's built-in profile makes (require CMK, alert mode): report the
    # account when its key source is not Key Vault. No action, so Custodian's cost is its own.
    policy = {"policies": [{
        "name": "storage-cmk-event",
        "resource": "azure.storage",
        "mode": {
            "type": "azure-event-grid",
            "events": [{"resourceProvider": "Microsoft.Storage/storageAccounts", "event": "write"}],
            "execution-options": {"output_dir": os.path.join(a.workdir, "output")},
        },
        "filters": [{"type": "value", "key": "properties.encryption.keySource",
                     "op": "ne", "value": "Microsoft.Keyvault"}],
    }]}
    config = os.path.join(a.workdir, "config.json")
    auth = os.path.join(a.workdir, "auth.json")
    with open(config, "w") as f:
        json.dump(policy, f)
    with open(auth, "w") as f:
        json.dump({"access_token": os.environ["AZURE_ACCESS_TOKEN"],
                   "subscription_id": os.environ["AZURE_SUBSCRIPTION_ID"],
                   "tenant_id": os.environ.get("AZURE_TENANT_ID", "")}, f)
    context = {"config_file": config, "auth_file": auth}

    with open(a.events) as f:
        events = json.load(f)[: a.limit]
    latencies = []
    for event in events:
        start = time.perf_counter()
        handler.run(event, context, ResourceIdParser.get_subscription_id(event["subject"]))
        latencies.append(time.perf_counter() - start)
        if len(latencies) == 1:
            print("answered", flush=True)
    warm = sorted(latencies[1:] or latencies)
    print(json.dumps({
        "events": len(events),
        "warm_median_ms": statistics.median(warm) * 1000,
        "warm_p95_ms": warm[int(0.95 * (len(warm) - 1))] * 1000,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }), flush=True)


if __name__ == "__main__":
    sys.exit(main())
