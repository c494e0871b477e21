// keyguard in one subscription: the Function App and its storage, monitoring and alerts in a
// resource group of this subscription, and for the same subscription the least-privilege custom
// role, its assignment, the Event Grid system topic and the event subscriptions to EncryptionDrift.
// For several subscriptions under a management group, deploy main.mg.bicep instead.
//
// The role's permissions, the event filters and the policy ids are not written here: they are
// generated from keyguard's catalog into generated/ (keyguard infra export) and loaded below.
targetScope = 'subscription'

@description('Region of the resource group and the Function App.')
param location string = deployment().location

@description('Resource group for the Function App, its storage and monitoring.')
param resourceGroupName string = 'rg-keyguard'

@description('Resource group, in this subscription, for the Event Grid system topic.')
param eventsResourceGroupName string = 'rg-keyguard-events'

@description('Short prefix of resource names (lower-case letters and digits).')
@minLength(3)
@maxLength(11)
param namePrefix string = 'keyguard'

@description('FlexConsumption (default) or ElasticPremium.')
@allowed([
  'FlexConsumption'
  'ElasticPremium'
])
param hostingPlan string = 'FlexConsumption'

@description('Resource id of a user-assigned identity to run keyguard as; empty: a system-assigned identity.')
param userAssignedIdentityId string = ''

@description('Principal (object) id of that user-assigned identity.')
param userAssignedIdentityPrincipalId string = ''

@description('Client id of that user-assigned identity.')
param userAssignedIdentityClientId string = ''

@description('E-mail address the action group alerts.')
param alertEmail string

@description('Failed EncryptionDrift/Api/Reconcile invocations in 15 minutes that raise an alert.')
@minValue(1)
param functionFailureThreshold int = 5

@description('Key Vault secret URI holding keyguard.toml (the profiles); empty: the built-in profile (require CMK, alert).')
param configSecretUri string = ''

@description('App settings the alert routes name (url_env, smtp_env, ...) mapped to Key Vault secret URIs.')
param alertSecretUris object = {}

@description('Resource id of the Key Vault holding those secrets; the app identity gets Key Vault Secrets User on it.')
param secretsKeyVaultId string = ''

@description('Create the event subscriptions. The first deployment runs with false, then the package is published, then true: Event Grid checks that EncryptionDrift exists.')
param deployEventSubscriptions bool = true

@description('Assign the built-in "... should use customer-managed keys" policies for the types keyguard cannot revert (Deny where the definition allows it, else Audit).')
param enablePolicyDeny bool = false

@description('Scopes (resource groups) excluded from those policy assignments, e.g. the ones whose profile requires Microsoft-managed keys.')
param policyNotScopes array = []

var role = loadJsonContent('generated/role.json')

resource roleDefinition 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, 'keyguard-remediator')
  properties: {
    roleName: '${role.roleName} (${subscription().subscriptionId})'
    description: role.description
    type: 'CustomRole'
    assignableScopes: [
      subscription().id
    ]
    permissions: [
      {
        actions: role.actions
        notActions: role.notActions
        dataActions: role.dataActions
        notDataActions: role.notDataActions
      }
    ]
  }
}

module home 'modules/home.bicep' = {
  name: 'keyguard-home'
  params: {
    location: location
    resourceGroupName: resourceGroupName
    namePrefix: namePrefix
    hostingPlan: hostingPlan
    userAssignedIdentityId: userAssignedIdentityId
    userAssignedIdentityPrincipalId: userAssignedIdentityPrincipalId
    userAssignedIdentityClientId: userAssignedIdentityClientId
    alertEmail: alertEmail
    functionFailureThreshold: functionFailureThreshold
    configSecretUri: configSecretUri
    alertSecretUris: alertSecretUris
    secretsKeyVaultId: secretsKeyVaultId
    sweepScopes: subscription().id
  }
}

module target 'modules/target.bicep' = {
  name: 'keyguard-target-${subscription().subscriptionId}'
  params: {
    location: location
    eventsResourceGroupName: eventsResourceGroupName
    assignRole: true
    roleDefinitionName: roleDefinition.name
    principalId: home.outputs.principalId
    functionAppId: home.outputs.functionAppId
    homeSubscriptionId: subscription().subscriptionId
    homeResourceGroupName: resourceGroupName
    storageAccountName: home.outputs.storageAccountName
    deadLetterContainerName: home.outputs.deadLetterContainerName
    actionGroupId: home.outputs.actionGroupId
    deployEventSubscriptions: deployEventSubscriptions
    enablePolicyDeny: enablePolicyDeny
    policyNotScopes: policyNotScopes
  }
}

output functionAppName string = home.outputs.functionAppName
output functionAppResourceGroup string = resourceGroupName
output functionAppSubscriptionId string = subscription().subscriptionId
output principalId string = home.outputs.principalId
output roleDefinitionId string = roleDefinition.id
output eventSubscriptionCount int = target.outputs.eventSubscriptionCount
