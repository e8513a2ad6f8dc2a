// Package sqs consumes a worker's SQS queue, fed by an EventBridge rule, with
// a long-running Watermill subscriber, and hands each chat event to the
// worker's handler. Failed messages are left on the queue: they come back
// after the visibility timeout, and the queue's redrive policy moves them to
// its dead-letter queue after maxReceiveCount receives.
package sqs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	wmsqs "github.com/ThreeDotsLabs/watermill-aws/sqs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/internal/awsconf"
	"github.com/parleychat/parley/internal/wmlog"
)

// Config says which queue to consume and how.
type Config struct {
	// QueueURL is the worker's queue.
	QueueURL string
	// AWS says where SQS is: AWS itself, or a local SQS server when
	// AWS.Endpoint is set.
	AWS awsconf.Options
	// Concurrency is the number of messages handled at once (default 1).
	// Each one has its own receive loop.
	Concurrency int
}

// visibilityAPI is the SQS call the consumer makes besides receive and
// delete, which the Watermill subscriber makes.
type visibilityAPI interface {
	ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, optFns ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error)
}

var _ visibilityAPI = (*sqs.Client)(nil)

// Run consumes the queue until ctx is done, then returns nil once the
// messages in hand are settled. Each message is decoded and passed to h: on
// success it is deleted; on failure it is left for redelivery, logged once.
// A body that is not a chat event, and a failure marked events.Permanent, are
// made visible again at once so that they reach the dead-letter queue after
// maxReceiveCount quick receives instead of as many visibility timeouts.
func Run(ctx context.Context, cfg Config, h events.Handler, logger *slog.Logger) error {
	if cfg.QueueURL == "" {
		return errors.New("sqs consumer: queue URL is required")
	}
	if h == nil {
		return errors.New("sqs consumer: nil handler")
	}
	if logger == nil {
		logger = slog.Default()
	}
	awsCfg, err := awsconf.Load(ctx, cfg.AWS)
	if err != nil {
		return fmt.Errorf("sqs consumer: %w", err)
	}
	client := sqs.NewFromConfig(awsCfg)
	// Fail fast on a wrong URL or missing permission: the subscriber would
	// only log receive errors forever.
	if _, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(cfg.QueueURL),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameVisibilityTimeout},
	}); err != nil {
		return fmt.Errorf("sqs consumer: queue %s: %w", cfg.QueueURL, err)
	}
	sub, err := wmsqs.NewSubscriber(wmsqs.SubscriberConfig{
		AWSConfig:                   awsCfg,
		DoNotCreateQueueIfNotExists: true, // queues, DLQs and redrive policies are infrastructure
		QueueUrlResolver:            wmsqs.TransparentUrlResolver{},
		GenerateReceiveMessageInput: receiveInput,
		Unmarshaler:                 unmarshaler{},
	}, wmlog.New(logger)) // it adds the queue to its own records
	if err != nil {
		return fmt.Errorf("sqs consumer: %w", err)
	}
	defer sub.Close()

	c := &consumer{handler: h, sqs: client, queueURL: cfg.QueueURL, logger: logger.With("queue", cfg.QueueURL)}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for range max(cfg.Concurrency, 1) {
		msgs, err := sub.Subscribe(runCtx, cfg.QueueURL)
		if err != nil {
			cancel()
			wg.Wait()
			return fmt.Errorf("sqs consumer: subscribe: %w", err)
		}
		// The subscriber blocks until each message is acked or nacked, and
		// closes the channel once runCtx is done: read it to the end.
		wg.Go(func() {
			for msg := range msgs {
				c.process(runCtx, msg)
			}
		})
	}
	wg.Wait()
	return nil
}

// receiveInput is Watermill's long poll (20 s, one message), also asking for
// the receive count so that failures can be logged with it.
func receiveInput(ctx context.Context, url wmsqs.QueueURL) (*sqs.ReceiveMessageInput, error) {
	in, err := wmsqs.GenerateReceiveMessageInputDefault(ctx, url)
	if err != nil {
		return nil, err
	}
	in.MessageSystemAttributeNames = []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameApproximateReceiveCount}
	return in, nil
}

type consumer struct {
	handler  events.Handler
	sqs      visibilityAPI
	queueURL string
	logger   *slog.Logger
}

func (c *consumer) process(ctx context.Context, msg *message.Message) {
	if ctx.Err() != nil {
		msg.Nack() // stopping: leave it on the queue
		return
	}
	log := c.logger.With(
		"sqs_message_id", msg.Metadata.Get(metaSQSMessageID),
		"receive_count", msg.Metadata.Get(metaReceiveCount),
	)
	if reason := msg.Metadata.Get(metaInvalid); reason != "" {
		log.ErrorContext(ctx, "message is not a chat event; leaving it for the dead-letter queue", "error", reason)
		c.redeliverNow(ctx, log, msg)
		msg.Nack()
		return
	}
	env, err := events.Decode(msg.Payload)
	if err != nil { // the unmarshaler checked it; kept so a change there cannot drop events
		log.ErrorContext(ctx, "message is not a chat event; leaving it for the dead-letter queue", "error", err)
		c.redeliverNow(ctx, log, msg)
		msg.Nack()
		return
	}
	log = log.With("event_id", env.ID, "event_type", env.Type)
	if replay := msg.Metadata.Get(metaReplayName); replay != "" {
		log = log.With("replay", replay)
	}
	err = events.Invoke(msg.Context(), c.handler, env)
	switch d := events.Classify(err); {
	case d == events.Ack:
		msg.Ack()
		return
	case ctx.Err() != nil:
		log.InfoContext(ctx, "handler interrupted by shutdown; the message will be redelivered", "error", err)
	case d == events.DeadLetter:
		log.ErrorContext(ctx, "handler failed permanently; leaving the message for the dead-letter queue", "error", err)
		c.redeliverNow(ctx, log, msg)
	default:
		log.WarnContext(ctx, "handler failed; the message returns after the visibility timeout", "error", err)
	}
	msg.Nack()
}

// redeliverNow makes a message that can never succeed visible again at once,
// so its receive count reaches maxReceiveCount quickly. If that fails, the
// visibility timeout does the same, only later.
func (c *consumer) redeliverNow(ctx context.Context, log *slog.Logger, msg *message.Message) {
	handle := msg.Metadata.Get(metaReceiptHandle)
	if handle == "" {
		return
	}
	_, err := c.sqs.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
		QueueUrl:          aws.String(c.queueURL),
		ReceiptHandle:     aws.String(handle),
		VisibilityTimeout: 0,
	})
	if err != nil {
		log.WarnContext(ctx, "could not make the message visible again; it returns after the visibility timeout", "error", err)
	}
}
