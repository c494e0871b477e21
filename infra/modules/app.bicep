// The keyguard Function App (custom handler, Linux) and what it runs on: a storage account for
// the Functions host, the Flex Consumption package and keyguard's Table Storage state, reached
// with the app's identity only (shared keys off); Application Insights on a Log Analytics
// workspace (local auth off); an action group and an alert on failed invocations.

param location string
param namePrefix string

@allowed([
  'FlexConsumption'
  'ElasticPremium'
])
param hostingPlan string

param userAssignedIdentityId string
param userAssignedIdentityPrincipalId string
param userAssignedIdentityClientId string
param alertEmail string
param functionFailureThreshold int
param configSecretUri string
param alertSecretUris object
param sweepScopes string

@description('Flex Consumption scale-out ceiling (40 is the smallest the plan accepts).')
@minValue(40)
@maxValue(1000)
param flexMaximumInstanceCount int = 40

@description('Storage redundancy: keyguard state, dead letters and the package survive a regional outage with GRS.')
@allowed([
  'Standard_GRS'
  'Standard_RAGRS'
  'Standard_GZRS'
  'Standard_RAGZRS'
])
param storageSku string = 'Standard_GRS'

@description('Spread the plan across availability zones (the region must support it; Elastic Premium then keeps three instances).')
param zoneRedundant bool = false

var isFlex = hostingPlan == 'FlexConsumption'
var useUserAssigned = !empty(userAssignedIdentityId)
var suffix = uniqueString(resourceGroup().id)
var prefix = toLower(namePrefix)
var appName = '${prefix}-${suffix}'
var storageName = take('${prefix}${suffix}', 24)
var packageContainerName = 'app-package'
var deadLetterContainerName = 'deadletter'

// Built-in data roles, each scoped to this storage account or component only.
var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var storageTableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: Flex Consumption without VNet integration reaches its host storage over the public endpoint, and the Functions host is not a trusted service that a deny rule lets through. Access needs Entra ID: shared keys are off.
  // checkov:skip=CKV_AZURE_59: same reason as CKV_AZURE_35; a deployment with VNet integration and private endpoints can set publicNetworkAccess to Disabled.
  // checkov:skip=CKV_AZURE_43: the name is computed (take(prefix + uniqueString(resourceGroup().id), 24), lower-case letters and digits); checkov cannot evaluate take().
  name: storageName
  location: location
  kind: 'StorageV2'
  sku: {
    name: storageSku
  }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowCrossTenantReplication: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
          keyType: 'Account'
        }
        file: {
          enabled: true
          keyType: 'Account'
        }
        table: {
          enabled: true
          keyType: 'Account'
        }
        queue: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource packageContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: packageContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deadLetterContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: '${prefix}-logs-${suffix}'
  location: location
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 90
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: '${prefix}-ai-${suffix}'
  location: location
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true
  }
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: zone redundancy is the zoneRedundant parameter: regions without availability zones reject it, and on Elastic Premium it needs three always-on instances.
  name: '${prefix}-plan-${suffix}'
  location: location
  kind: isFlex ? 'functionapp' : 'elastic'
  sku: isFlex ? {
    name: 'FC1'
    tier: 'FlexConsumption'
  } : {
    name: 'EP1'
    tier: 'ElasticPremium'
  }
  properties: {
    reserved: true
    zoneRedundant: zoneRedundant
  }
}

var commonSettings = [
  {
    name: 'AzureWebJobsStorage__accountName'
    value: storage.name
  }
  {
    name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
    value: appInsights.properties.ConnectionString
  }
  {
    name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
    value: useUserAssigned ? 'ClientId=${userAssignedIdentityClientId};Authorization=AAD' : 'Authorization=AAD'
  }
  {
    name: 'KEYGUARD_AUTH'
    value: 'managed-identity'
  }
  {
    name: 'KEYGUARD_STATE_STORE'
    value: 'table'
  }
  {
    name: 'KEYGUARD_SWEEP_SCOPES'
    value: sweepScopes
  }
]

var userAssignedSettings = useUserAssigned ? [
  {
    name: 'AzureWebJobsStorage__credential'
    value: 'managedidentity'
  }
  {
    name: 'AzureWebJobsStorage__clientId'
    value: userAssignedIdentityClientId
  }
  {
    name: 'KEYGUARD_CLIENT_ID'
    value: userAssignedIdentityClientId
  }
] : []

// Flex Consumption takes the runtime from functionAppConfig and runs from its package by
// default; Elastic Premium needs the classic settings. Its content comes from the zip
// (run from package), not from an Azure Files share, which would need the account key.
var premiumSettings = isFlex ? [] : [
  {
    name: 'FUNCTIONS_EXTENSION_VERSION'
    value: '~4'
  }
  {
    name: 'FUNCTIONS_WORKER_RUNTIME'
    value: 'custom'
  }
  {
    name: 'WEBSITE_RUN_FROM_PACKAGE'
    value: '1'
  }
]

// The profiles (keyguard.toml) and the alert routes' secrets come from Key Vault references:
// never written into this template, its parameters or the deployment history.
var configSettings = empty(configSecretUri) ? [] : [
  {
    name: 'KEYGUARD_CONFIG_TOML'
    value: '@Microsoft.KeyVault(SecretUri=${configSecretUri})'
  }
]

var alertSecretSettings = [for secret in items(alertSecretUris): {
  name: secret.key
  value: '@Microsoft.KeyVault(SecretUri=${secret.value})'
}]

var flexConfig = {
  deployment: {
    storage: {
      type: 'blobContainer'
      value: '${storage.properties.primaryEndpoints.blob}${packageContainer.name}'
      authentication: useUserAssigned ? {
        type: 'UserAssignedIdentity'
        userAssignedIdentityResourceId: userAssignedIdentityId
      } : {
        type: 'SystemAssignedIdentity'
      }
    }
  }
  scaleAndConcurrency: {
    maximumInstanceCount: flexMaximumInstanceCount
    instanceMemoryMB: 2048
  }
  runtime: {
    name: 'custom'
    version: '1.0'
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_16: the app always has a managed identity, system-assigned or the user-assigned one given; checkov cannot evaluate the conditional type (CKV_AZURE_71 passes).
  // checkov:skip=CKV_AZURE_222: Event Grid delivers to EncryptionDrift over the public endpoint; every function needs a key (the host checks it), the Event Grid extension's system key included.
  // checkov:skip=CKV_AZURE_17: Event Grid and the Functions host keys do not use client certificates; requiring them would block event delivery.
  // checkov:skip=CKV_AZURE_212: Flex Consumption scales from zero per event; there are no always-on instances to set a minimum for.
  // checkov:skip=CKV_AZURE_213: the platform health check pings anonymously, and every keyguard route needs a function key; GET /api/health is for authenticated probes.
  name: appName
  location: location
  kind: 'functionapp,linux'
  identity: {
    type: useUserAssigned ? 'UserAssigned' : 'SystemAssigned'
    userAssignedIdentities: useUserAssigned ? {
      '${userAssignedIdentityId}': {}
    } : null
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientAffinityEnabled: false
    keyVaultReferenceIdentity: useUserAssigned ? userAssignedIdentityId : 'SystemAssigned'
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: concat(commonSettings, userAssignedSettings, premiumSettings, configSettings, alertSecretSettings)
    }
    functionAppConfig: isFlex ? flexConfig : null
  }
}

resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

var principalId = useUserAssigned ? userAssignedIdentityPrincipalId : site.identity.principalId

// The host keeps its leases and timer state in blobs, and Flex Consumption reads the package
// from a container: Storage Blob Data Owner is what the Functions docs require for an
// identity-based AzureWebJobsStorage.
resource hostBlobAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, appName, storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwner)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// keyguard's state (leases, baselines, audit, outbox) in Table Storage.
resource stateTableAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, appName, storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// Application Insights with local auth off takes telemetry from Entra-authenticated senders only.
resource telemetryAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, appName, monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: '${prefix}-operators'
  location: 'global'
  properties: {
    groupShortName: 'keyguard'
    enabled: true
    emailReceivers: [
      {
        name: 'keyguard-operators'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

resource failedInvocations 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: '${prefix}-failed-invocations'
  location: 'global'
  properties: {
    description: 'keyguard invocations (EncryptionDrift, Reconcile, Api) failed: events may be retried, dead-lettered or lost.'
    severity: 2
    enabled: true
    scopes: [
      appInsights.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          name: 'failed-requests'
          criterionType: 'StaticThresholdCriterion'
          metricNamespace: 'microsoft.insights/components'
          metricName: 'requests/failed'
          operator: 'GreaterThanOrEqual'
          threshold: functionFailureThreshold
          timeAggregation: 'Count'
        }
      ]
    }
    actions: [
      {
        actionGroupId: actionGroup.id
      }
    ]
  }
}

output principalId string = principalId
output functionAppId string = site.id
output functionAppName string = site.name
output storageAccountName string = storage.name
output deadLetterContainerName string = deadLetterContainer.name
output actionGroupId string = actionGroup.id
