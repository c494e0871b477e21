// Example parameters for main.mg.bicep (several subscriptions under a management group):
//   scripts/deploy.sh --management-group mg-prod --parameters infra/main.mg.bicepparam [--apply]
using 'main.mg.bicep'

param homeSubscriptionId = '00000000-0000-0000-0000-000000000000'
param targetSubscriptionIds = [
  '00000000-0000-0000-0000-000000000000'
  '11111111-1111-1111-1111-111111111111'
]
param roleAssignmentScope = 'subscriptions'
param location = 'westeurope'
param alertEmail = 'secops@contoso.example'
param enablePolicyDeny = false

// scripts/deploy.sh --apply overrides this on the command line (false, publish, then true).
// Keep it in the file: inline overrides were reported to be ignored for a parameter the
// .bicepparam file does not set (Azure/bicep#12647).
param deployEventSubscriptions = true
