package sqs

import (
	"context"
	"fmt"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/internal/awsconf"
)

// Status reads a worker's queue and, when dlqURL is set, its dead-letter
// queue from their approximate attributes. SQS gives the age of the oldest
// message only to CloudWatch (ApproximateAgeOfOldestMessage), and knows no
// consumers: both are reported unknown (-1).
func Status(ctx context.Context, opts awsconf.Options, worker, queueURL, dlqURL string) (events.QueueStatus, error) {
	s := events.QueueStatus{Worker: worker, OldestAge: -1, Consumers: -1}
	awsCfg, err := awsconf.Load(ctx, opts)
	if err != nil {
		return s, fmt.Errorf("sqs status: %w", err)
	}
	client := sqs.NewFromConfig(awsCfg)
	visible, inFlight, err := counts(ctx, client, queueURL)
	if err != nil {
		return s, err
	}
	s.Depth = visible + inFlight
	if dlqURL != "" {
		dead, deadInFlight, err := counts(ctx, client, dlqURL)
		if err != nil {
			return s, err
		}
		s.DeadLetters = dead + deadInFlight
	}
	return s, nil
}

func counts(ctx context.Context, client *sqs.Client, url string) (visible, inFlight int64, err error) {
	out, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(url),
		AttributeNames: []sqstypes.QueueAttributeName{
			sqstypes.QueueAttributeNameApproximateNumberOfMessages,
			sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
		},
	})
	if err != nil {
		return 0, 0, fmt.Errorf("sqs attributes of %s: %w", url, err)
	}
	num := func(name sqstypes.QueueAttributeName) (int64, error) {
		v := out.Attributes[string(name)]
		if v == "" {
			return 0, nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("sqs attributes of %s: %s=%q: %w", url, name, v, err)
		}
		return n, nil
	}
	if visible, err = num(sqstypes.QueueAttributeNameApproximateNumberOfMessages); err != nil {
		return 0, 0, err
	}
	if inFlight, err = num(sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible); err != nil {
		return 0, 0, err
	}
	return visible, inFlight, nil
}
