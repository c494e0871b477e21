// The event subscriptions to EncryptionDrift. Event Grid allows 25 advanced-filter values per
// subscription, so the catalog's write operations are split across as many as needed; the
// split is generated (generated/event-filters.json) and only looped over here.
param topicName string
param functionAppId string
param deadLetterStorageId string
param deadLetterContainerName string

var filters = loadJsonContent('../generated/event-filters.json')

resource topic 'Microsoft.EventGrid/systemTopics@2025-02-15' existing = {
  name: topicName
}

resource writes 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2025-02-15' = [for spec in filters.subscriptions: {
  parent: topic
  name: spec.name
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionAppId}/functions/EncryptionDrift'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: filters.includedEventTypes
      advancedFilters: [
        {
          operatorType: filters.operatorType
          key: filters.key
          values: spec.operationNames
        }
      ]
    }
    // Event Grid's ceilings: 30 attempts, 24 hours; then the event is dead-lettered.
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: deadLetterStorageId
          blobContainerName: deadLetterContainerName
        }
      }
    }
  }
}]
