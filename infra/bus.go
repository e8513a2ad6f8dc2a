package main

import (
	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsevents"
	"github.com/aws/aws-cdk-go/awscdk/v2/awseventstargets"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssqs"
	"github.com/aws/jsii-runtime-go"

	"github.com/parleychat/parley/events"
)

const (
	maxReceiveCount = 5
	dlqRetention    = 14 // days
)

// newEventBus creates the bus and an archive of everything on it, which is
// what replay re-delivers from.
func newEventBus(stack awscdk.Stack, cfg Config) (awsevents.EventBus, awsevents.Archive) {
	bus := awsevents.NewEventBus(stack, jsii.String("EventBus"), &awsevents.EventBusProps{
		EventBusName: jsii.String(EventBusName(cfg.Stage)),
		Description:  jsii.String("Parley chat domain events"),
	})
	archive := awsevents.NewArchive(stack, jsii.String("EventArchive"), &awsevents.ArchiveProps{
		SourceEventBus: bus,
		ArchiveName:    jsii.String(ArchiveName(cfg.Stage)),
		Description:    jsii.String("All chat events, for replay to one worker"),
		// Every event on a custom bus carries this account, so this matches all.
		EventPattern: &awsevents.EventPattern{Account: jsii.Strings(*stack.Account())},
		Retention:    awscdk.Duration_Days(jsii.Number(float64(cfg.ArchiveRetentionDays))),
	})
	return bus, archive
}

// pipeline is one worker's path from the bus: rule → queue → Lambda.
type pipeline struct {
	Worker      Worker
	Rule        awsevents.Rule
	Queue       awssqs.Queue
	DLQ         awssqs.Queue // messages the worker failed maxReceiveCount times
	DeliveryDLQ awssqs.Queue // events EventBridge could not put on Queue
}

// newPipeline wires a standard queue, not FIFO: a rule can only give a FIFO
// target one fixed group id, which would serialize every conversation.
// Ordering comes from the persister's per-conversation sequence instead.
func newPipeline(stack awscdk.Stack, cfg Config, bus awsevents.IEventBus, w Worker) pipeline {
	id := idPart(w.Name)
	p := pipeline{Worker: w}
	p.DLQ = newQueue(stack, id+"DLQ", &awssqs.QueueProps{
		QueueName:       jsii.String(RuleName(cfg.Stage, w.Name) + "-dlq"),
		RetentionPeriod: awscdk.Duration_Days(jsii.Number(dlqRetention)),
	})
	p.DeliveryDLQ = newQueue(stack, id+"DeliveryDLQ", &awssqs.QueueProps{
		QueueName:       jsii.String(RuleName(cfg.Stage, w.Name) + "-delivery-dlq"),
		RetentionPeriod: awscdk.Duration_Days(jsii.Number(dlqRetention)),
	})
	p.Queue = newQueue(stack, id+"Queue", &awssqs.QueueProps{
		QueueName: jsii.String(RuleName(cfg.Stage, w.Name)),
		// AWS's guidance for Lambda sources: 6x the function timeout plus the
		// batching window, so a retried batch never overlaps a running one.
		VisibilityTimeout: awscdk.Duration_Seconds(jsii.Number(6*w.TimeoutSec + w.BatchWindowSec)),
		DeadLetterQueue: &awssqs.DeadLetterQueue{
			Queue:           p.DLQ,
			MaxReceiveCount: jsii.Number(maxReceiveCount),
		},
	})

	// The rule is EventBridge's form of events.Route.Matches.
	pattern := &awsevents.EventPattern{
		Source:     jsii.Strings(events.Source),
		DetailType: jsii.Strings(w.Route.Types...),
	}
	if len(w.Route.Media) > 0 {
		// detail is the chat envelope, whose data carries the content type.
		detail := map[string]any{"data": map[string]any{"content_type": w.Route.Media}}
		pattern.Detail = &detail
	}
	p.Rule = awsevents.NewRule(stack, jsii.String(id+"Rule"), &awsevents.RuleProps{
		EventBus:     bus,
		RuleName:     jsii.String(RuleName(cfg.Stage, w.Name)),
		Description:  jsii.String("Chat events for the " + w.Name + " worker"),
		EventPattern: pattern,
	})
	// The whole EventBridge event is the message body; the worker adapter
	// unwraps `detail` (the chat envelope) and keeps `id` for logs.
	p.Rule.AddTarget(awseventstargets.NewSqsQueue(p.Queue, &awseventstargets.SqsQueueProps{
		DeadLetterQueue: p.DeliveryDLQ,
		MaxEventAge:     awscdk.Duration_Hours(jsii.Number(24)),
		RetryAttempts:   jsii.Number(185),
	}))
	return p
}

// newQueue applies what every queue here shares: SSE and TLS-only access.
func newQueue(stack awscdk.Stack, id string, props *awssqs.QueueProps) awssqs.Queue {
	// SQS-managed keys, not KMS: EventBridge cannot write to a queue encrypted
	// with the AWS-managed SQS KMS key.
	props.Encryption = awssqs.QueueEncryption_SQS_MANAGED
	props.EnforceSSL = jsii.Bool(true)
	return awssqs.NewQueue(stack, jsii.String(id), props)
}
