// The resource group that hosts keyguard, and the app inside it.
targetScope = 'subscription'

param location string
param resourceGroupName string
param namePrefix string
param hostingPlan string
param userAssignedIdentityId string
param userAssignedIdentityPrincipalId string
param userAssignedIdentityClientId string
param alertEmail string
param functionFailureThreshold int
param configSecretUri string
param alertSecretUris object
param secretsKeyVaultId string

@description('Comma list for KEYGUARD_SWEEP_SCOPES.')
param sweepScopes string

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: resourceGroupName
  location: location
}

module app 'app.bicep' = {
  name: 'keyguard-app'
  scope: rg
  params: {
    location: location
    namePrefix: namePrefix
    hostingPlan: hostingPlan
    userAssignedIdentityId: userAssignedIdentityId
    userAssignedIdentityPrincipalId: userAssignedIdentityPrincipalId
    userAssignedIdentityClientId: userAssignedIdentityClientId
    alertEmail: alertEmail
    functionFailureThreshold: functionFailureThreshold
    configSecretUri: configSecretUri
    alertSecretUris: alertSecretUris
    sweepScopes: sweepScopes
  }
}

// Key Vault references resolve with the app's identity: it reads the secrets, nothing else.
// take()/last() rather than an index: an empty id must not fail while the module is skipped.
var vaultIdParts = split(secretsKeyVaultId, '/')

module secretsAccess 'secretsAccess.bicep' = if (!empty(secretsKeyVaultId)) {
  name: 'keyguard-secrets-access'
  scope: resourceGroup(last(take(vaultIdParts, 3)), last(take(vaultIdParts, 5)))
  params: {
    keyVaultName: last(vaultIdParts)
    principalId: app.outputs.principalId
  }
}

output principalId string = app.outputs.principalId
output functionAppId string = app.outputs.functionAppId
output functionAppName string = app.outputs.functionAppName
output storageAccountName string = app.outputs.storageAccountName
output deadLetterContainerName string = app.outputs.deadLetterContainerName
output actionGroupId string = app.outputs.actionGroupId
