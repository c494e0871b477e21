#!/usr/bin/env bash
# Deploys keyguard with the Azure CLI. Without --apply it only runs what-if: nothing changes.
#
#   scripts/deploy.sh --parameters infra/main.bicepparam [--location westeurope] [--apply]
#       one subscription (the CLI's current one, or --subscription ID): infra/main.bicep
#   scripts/deploy.sh --management-group MG --parameters infra/main.mg.bicepparam --location L [--apply]
#       a list of subscriptions under a management group: infra/main.mg.bicep
#
# With --apply, three steps, because Event Grid checks that the EncryptionDrift function exists
# when an event subscription is created:
#   1. the infrastructure, without event subscriptions;
#   2. the package (dist/keyguard-functionapp.zip, built by scripts/package.sh if missing, or
#      --package FILE) published to the Function App;
#   3. the same deployment again with the event subscriptions.
set -euo pipefail
cd "$(dirname "$0")/.."

apply=false
management_group=""
subscription=""
parameters=""
location=""
package="dist/keyguard-functionapp.zip"
name="keyguard"
while [ $# -gt 0 ]; do
    case "$1" in
        --apply) apply=true; shift ;;
        --management-group) management_group="${2:?}"; shift 2 ;;
        --subscription) subscription="${2:?}"; shift 2 ;;
        --parameters) parameters="${2:?}"; shift 2 ;;
        --location) location="${2:?}"; shift 2 ;;
        --package) package="${2:?}"; shift 2 ;;
        --name) name="${2:?}"; shift 2 ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

[ -n "$parameters" ] || { echo "error: --parameters FILE is required (see infra/main.bicepparam)" >&2; exit 2; }
[ -f "$parameters" ] || { echo "error: no parameters file $parameters" >&2; exit 2; }
command -v az >/dev/null || { echo "error: the Azure CLI (az) is required: https://aka.ms/InstallAzureCli" >&2; exit 1; }

# A .bicepparam file names its template (using '...'); a JSON parameters file needs it given.
if [ -n "$management_group" ]; then
    scope=(mg --management-group-id "$management_group")
    template="infra/main.mg.bicep"
    [ -n "$location" ] || { echo "error: --location is required for a management-group deployment" >&2; exit 2; }
else
    scope=(sub)
    template="infra/main.bicep"
    [ -n "$subscription" ] && az account set --subscription "$subscription"
    location="${location:-$(python3 -c 'import re,sys; m=re.search(r"param location = .([a-z0-9]+).", open(sys.argv[1]).read()); print(m.group(1) if m else "")' "$parameters")}"
    [ -n "$location" ] || { echo "error: --location is required (the deployment's metadata region)" >&2; exit 2; }
fi
common=(--name "$name" --location "$location" --parameters "$parameters")
case "$parameters" in *.bicepparam) ;; *) common+=(--template-file "$template") ;; esac

run() {
    echo "+ az $*" >&2
    az "$@"
}

if ! $apply; then
    run deployment "${scope[@]}" what-if "${common[@]}"
    echo "what-if only: nothing was changed. Re-run with --apply to deploy." >&2
    exit 0
fi

[ -f "$package" ] || bash scripts/package.sh --out "$package"

run deployment "${scope[@]}" create "${common[@]}" --parameters deployEventSubscriptions=false --output none
outputs="$(az deployment "${scope[@]}" show --name "$name" --query properties.outputs --output json)"
app="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["functionAppName"]["value"])' <<<"$outputs")"
group="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["functionAppResourceGroup"]["value"])' <<<"$outputs")"
app_subscription="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["functionAppSubscriptionId"]["value"])' <<<"$outputs")"

# The Azure CLI publishes to a Flex Consumption app with one deploy, and to Elastic Premium with zip deploy.
run functionapp deployment source config-zip --subscription "$app_subscription" \
    --resource-group "$group" --name "$app" --src "$package"

run deployment "${scope[@]}" create "${common[@]}" --parameters deployEventSubscriptions=true --output none
az deployment "${scope[@]}" show --name "$name" --query properties.outputs --output json
echo "keyguard deployed: Function App $app in $group. Next: infra/README.md, 'Verify'." >&2
