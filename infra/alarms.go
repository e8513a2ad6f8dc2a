package main

import (
	"strings"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsapigatewayv2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatchactions"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssns"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssnssubscriptions"
	"github.com/aws/jsii-runtime-go"
)

// alarms sends every alarm to one topic; anything non-zero is worth a look in
// a chat backend, where each error is a message someone did not get.
type alarms struct {
	stack  awscdk.Stack
	action awscloudwatch.IAlarmAction
	topic  awssns.Topic
}

func newAlarms(stack awscdk.Stack, cfg Config) *alarms {
	topic := awssns.NewTopic(stack, jsii.String("AlarmTopic"), &awssns.TopicProps{
		TopicName:   jsii.String("parley-" + cfg.Stage + "-alarms"),
		DisplayName: jsii.String("Parley " + cfg.Stage + " alarms"),
		EnforceSSL:  jsii.Bool(true),
	})
	if cfg.AlarmEmail != "" {
		topic.AddSubscription(awssnssubscriptions.NewEmailSubscription(jsii.String(cfg.AlarmEmail), nil))
	}
	return &alarms{stack: stack, action: awscloudwatchactions.NewSnsAction(topic), topic: topic}
}

// AboveZero alarms when metric (summed or maxed over 5 minutes by the caller)
// is above zero. No data means nothing happened, not an outage.
func (a *alarms) AboveZero(id, description string, metric awscloudwatch.IMetric) awscloudwatch.Alarm {
	return a.Above(id, description, metric, 0)
}

// Above alarms when metric is above threshold.
func (a *alarms) Above(id, description string, metric awscloudwatch.IMetric, threshold float64) awscloudwatch.Alarm {
	alarm := awscloudwatch.NewAlarm(a.stack, jsii.String(id), &awscloudwatch.AlarmProps{
		AlarmDescription:   jsii.String(description),
		Metric:             metric,
		Threshold:          jsii.Number(threshold),
		ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_THRESHOLD,
		EvaluationPeriods:  jsii.Number(1),
		TreatMissingData:   awscloudwatch.TreatMissingData_NOT_BREACHING,
	})
	alarm.AddAlarmAction(a.action)
	alarm.AddOkAction(a.action)
	return alarm
}

// WatchAll covers anything in a DLQ, any function error and any server-side
// error at the edge.
func (a *alarms) WatchAll(pipes []pipeline, functions []awslambda.Function,
	wsStage awsapigatewayv2.WebSocketStage, httpAPI awsapigatewayv2.HttpApi) {
	for _, p := range pipes {
		id := idPart(p.Worker.Name)
		a.AboveZero(id+"DlqAlarm", "Messages the "+p.Worker.Name+" worker failed 5 times",
			p.DLQ.MetricApproximateNumberOfMessagesVisible(fiveMinutes("Maximum")))
		// A queue's age, not only its DLQ: a worker that stops consuming
		// (throttled, failing to start) dead-letters nothing.
		a.Above(id+"QueueAgeAlarm", "The oldest message in the "+p.Worker.Name+" queue waited over "+queueAgeLimit.String(),
			p.Queue.MetricApproximateAgeOfOldestMessage(fiveMinutes("Maximum")), queueAgeLimit.Seconds())
		a.AboveZero(id+"DeliveryDlqAlarm", "Events EventBridge could not deliver to the "+p.Worker.Name+" queue",
			p.DeliveryDLQ.MetricApproximateNumberOfMessagesVisible(fiveMinutes("Maximum")))
	}
	for _, fn := range functions {
		id := *fn.Node().Id()
		a.AboveZero(strings.TrimSuffix(id, "Function")+"ErrorsAlarm", "Errors in "+id,
			fn.MetricErrors(fiveMinutes("Sum")))
	}
	// WebSocket APIs publish no 5xx metric; these two are their server-side errors.
	a.AboveZero("WebSocketIntegrationErrorAlarm", "WebSocket route integration errors",
		wsStage.Metric(jsii.String("IntegrationError"), fiveMinutes("Sum")))
	a.AboveZero("WebSocketExecutionErrorAlarm", "WebSocket API execution errors",
		wsStage.Metric(jsii.String("ExecutionError"), fiveMinutes("Sum")))
	a.AboveZero("HttpApi5xxAlarm", "HTTP API 5xx responses",
		httpAPI.MetricServerError(fiveMinutes("Sum")))
}

// queueAgeLimit is the oldest a worker queue's message may wait: far
// beyond a batch's handling (seconds for a video poster frame), short
// enough that a stalled worker is noticed before users do.
const queueAgeLimit = 2 * time.Minute

// fiveMinutes is the window every alarm here looks at.
func fiveMinutes(statistic string) *awscloudwatch.MetricOptions {
	return &awscloudwatch.MetricOptions{
		Period:    awscdk.Duration_Minutes(jsii.Number(5)),
		Statistic: jsii.String(statistic),
	}
}
