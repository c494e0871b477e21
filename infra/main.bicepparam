// Example parameters for main.bicep (one subscription). Copy, edit, then:
//   scripts/deploy.sh --parameters infra/main.bicepparam            (what-if)
//   scripts/deploy.sh --parameters infra/main.bicepparam --apply    (deploy)
using 'main.bicep'

param location = 'westeurope'
param alertEmail = 'secops@contoso.example'

// Optional: the profiles (keyguard.toml) and the alert routes' secrets, as Key Vault secret URIs.
// The app reads them through Key Vault references with its own identity.
param secretsKeyVaultId = ''
param configSecretUri = ''
param alertSecretUris = {
  // KEYGUARD_TEAMS_SECOPS_URL: 'https://kv-secops.vault.azure.net/secrets/teams-secops-url'
}

// Deny creation of one-way and creation-only types without a customer-managed key.
param enablePolicyDeny = false
param policyNotScopes = [
  // '/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-mmk-ok'
]

// scripts/deploy.sh --apply overrides this on the command line (false, publish, then true).
// Keep it in the file: inline overrides were reported to be ignored for a parameter the
// .bicepparam file does not set (Azure/bicep#12647).
param deployEventSubscriptions = true
