// One subscription keyguard watches: the role assignment, the Event Grid system topic for the
// subscription's ARM writes, the event subscriptions to EncryptionDrift, and (optionally) the
// built-in policies for what keyguard cannot revert.
targetScope = 'subscription'

param location string
param eventsResourceGroupName string

@description('Assign the custom role here (false when it is assigned once at the management group).')
param assignRole bool

@description('Name (GUID) of the keyguard role definition; it is referenced from this subscription.')
param roleDefinitionName string
param principalId string
param functionAppId string
param homeSubscriptionId string
param homeResourceGroupName string
param storageAccountName string
param deadLetterContainerName string
param actionGroupId string
param deployEventSubscriptions bool
param enablePolicyDeny bool
param policyNotScopes array

var filters = loadJsonContent('../generated/event-filters.json')
var policies = loadJsonContent('../generated/policies.json')

resource remediator 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (assignRole) {
  name: guid(subscription().id, roleDefinitionName, principalId)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionName)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'keyguard: read the catalog types, revert drift where reversible'
  }
}

resource eventsGroup 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: eventsResourceGroupName
  location: location
}

module topic 'topic.bicep' = {
  name: 'keyguard-topic'
  scope: eventsGroup
  params: {
    actionGroupId: actionGroupId
  }
}

// The topic writes dead letters with its own identity: the account takes no shared keys.
module deadLetterAccess 'deadLetterAccess.bicep' = {
  name: 'keyguard-deadletter-${subscription().subscriptionId}'
  scope: resourceGroup(homeSubscriptionId, homeResourceGroupName)
  params: {
    storageAccountName: storageAccountName
    containerName: deadLetterContainerName
    principalId: topic.outputs.principalId
  }
}

module subscriptions 'eventSubscriptions.bicep' = if (deployEventSubscriptions) {
  name: 'keyguard-event-subscriptions'
  scope: eventsGroup
  dependsOn: [
    deadLetterAccess
  ]
  params: {
    topicName: topic.outputs.name
    functionAppId: functionAppId
    deadLetterStorageId: resourceId(homeSubscriptionId, homeResourceGroupName, 'Microsoft.Storage/storageAccounts', storageAccountName)
    deadLetterContainerName: deadLetterContainerName
  }
}

// Prevent where reverting is impossible: types whose switch to a customer-managed key is
// one-way or creation-only get the built-in "... should use customer-managed keys" policy,
// with effect Deny where the definition allows it, else Audit.
resource preventions 'Microsoft.Authorization/policyAssignments@2024-04-01' = [for assignment in (enablePolicyDeny ? policies.assignments : []): {
  name: 'keyguard-cmk-${uniqueString(assignment.policyDefinitionId)}'
  properties: {
    displayName: 'keyguard: ${assignment.resourceType} must use a customer-managed key (${assignment.effect})'
    description: 'keyguard cannot switch this type to a customer-managed key after creation, so it is required at creation.'
    policyDefinitionId: assignment.policyDefinitionId
    enforcementMode: 'Default'
    notScopes: policyNotScopes
    parameters: {
      effect: {
        value: assignment.effect
      }
    }
    nonComplianceMessages: [
      {
        message: 'Create this resource with a customer-managed key: it cannot be switched to one later.'
      }
    ]
  }
}]

output eventSubscriptionCount int = deployEventSubscriptions ? length(filters.subscriptions) : 0
output systemTopicName string = topic.outputs.name
