package sqs

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/parleychat/parley/internal/awsconf"
)

// Purge deletes every message of a queue (a worker's dead-letter queue).
// SQS finishes within a minute; messages sent meanwhile may go too.
func Purge(ctx context.Context, opts awsconf.Options, queueURL string) error {
	awsCfg, err := awsconf.Load(ctx, opts)
	if err != nil {
		return fmt.Errorf("sqs purge: %w", err)
	}
	if _, err := sqs.NewFromConfig(awsCfg).PurgeQueue(ctx, &sqs.PurgeQueueInput{QueueUrl: aws.String(queueURL)}); err != nil {
		return fmt.Errorf("sqs purge %s: %w", queueURL, err)
	}
	return nil
}
