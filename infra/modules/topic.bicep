// The subscription's ARM events (Microsoft.Resources.Subscriptions system topic) and an alert
// when one of them could not be delivered and was dead-lettered.
param actionGroupId string

resource topic 'Microsoft.EventGrid/systemTopics@2025-02-15' = {
  name: 'keyguard-arm-writes'
  location: 'global'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: subscription().id
    topicType: 'Microsoft.Resources.Subscriptions'
  }
}

resource deadLettered 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: 'keyguard-dead-lettered-${subscription().subscriptionId}'
  location: 'global'
  properties: {
    description: 'An ARM write event could not be delivered to keyguard and was dead-lettered: that change was not checked. Run keyguard scan on the subscription.'
    severity: 1
    enabled: true
    scopes: [
      topic.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          name: 'dead-lettered'
          criterionType: 'StaticThresholdCriterion'
          metricNamespace: 'Microsoft.EventGrid/systemTopics'
          metricName: 'DeadLetteredCount'
          operator: 'GreaterThan'
          threshold: 0
          timeAggregation: 'Total'
        }
      ]
    }
    actions: [
      {
        actionGroupId: actionGroupId
      }
    ]
  }
}

output name string = topic.name
output principalId string = topic.identity.principalId
