// keyguard for a list of subscriptions under a management group: the Function App in a home
// subscription, the custom role defined at the management group, and per target subscription
// the role assignment (or one at the management group), the Event Grid system topic and the
// event subscriptions. The lists come from generated/ (keyguard infra export).
targetScope = 'managementGroup'

@description('Subscription that hosts the Function App, its storage and monitoring.')
param homeSubscriptionId string

@description('Subscriptions keyguard watches and reverts (each gets a system topic and event subscriptions).')
@minLength(1)
param targetSubscriptionIds array

@description('subscriptions: assign the role in each target subscription only (least privilege); managementGroup: one assignment at this management group, which also covers subscriptions added later.')
@allowed([
  'subscriptions'
  'managementGroup'
])
param roleAssignmentScope string = 'subscriptions'

@description('Region of the resource groups and the Function App.')
param location string

param resourceGroupName string = 'rg-keyguard'
param eventsResourceGroupName string = 'rg-keyguard-events'

@minLength(3)
@maxLength(11)
param namePrefix string = 'keyguard'

@allowed([
  'FlexConsumption'
  'ElasticPremium'
])
param hostingPlan string = 'FlexConsumption'

param userAssignedIdentityId string = ''
param userAssignedIdentityPrincipalId string = ''
param userAssignedIdentityClientId string = ''
param alertEmail string

@minValue(1)
param functionFailureThreshold int = 5

param configSecretUri string = ''
param alertSecretUris object = {}
param secretsKeyVaultId string = ''
param deployEventSubscriptions bool = true
param enablePolicyDeny bool = false
param policyNotScopes array = []

var role = loadJsonContent('generated/role.json')
var sweepScopes = [for s in targetSubscriptionIds: '/subscriptions/${s}']

resource roleDefinition 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(managementGroup().id, 'keyguard-remediator')
  properties: {
    roleName: '${role.roleName} (${managementGroup().name})'
    description: role.description
    type: 'CustomRole'
    assignableScopes: [
      managementGroup().id
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
  scope: subscription(homeSubscriptionId)
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
    sweepScopes: join(sweepScopes, ',')
  }
}

resource managementGroupAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (roleAssignmentScope == 'managementGroup') {
  name: guid(managementGroup().id, roleDefinition.id, 'keyguard')
  properties: {
    roleDefinitionId: roleDefinition.id
    principalId: home.outputs.principalId
    principalType: 'ServicePrincipal'
    description: 'keyguard: read the catalog types, revert drift where reversible'
  }
}

module targets 'modules/target.bicep' = [for subscriptionId in targetSubscriptionIds: {
  name: 'keyguard-target-${subscriptionId}'
  scope: subscription(subscriptionId)
  params: {
    location: location
    eventsResourceGroupName: eventsResourceGroupName
    assignRole: roleAssignmentScope == 'subscriptions'
    roleDefinitionName: roleDefinition.name
    principalId: home.outputs.principalId
    functionAppId: home.outputs.functionAppId
    homeSubscriptionId: homeSubscriptionId
    homeResourceGroupName: resourceGroupName
    storageAccountName: home.outputs.storageAccountName
    deadLetterContainerName: home.outputs.deadLetterContainerName
    actionGroupId: home.outputs.actionGroupId
    deployEventSubscriptions: deployEventSubscriptions
    enablePolicyDeny: enablePolicyDeny
    policyNotScopes: policyNotScopes
  }
}]

output functionAppName string = home.outputs.functionAppName
output functionAppResourceGroup string = resourceGroupName
output functionAppSubscriptionId string = homeSubscriptionId
output principalId string = home.outputs.principalId
output roleDefinitionId string = roleDefinition.id
