package eventbridge

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/google/uuid"
)

// StartReplayAPI is the part of the EventBridge client Replay uses.
type StartReplayAPI interface {
	StartReplay(ctx context.Context, in *eventbridge.StartReplayInput, optFns ...func(*eventbridge.Options)) (*eventbridge.StartReplayOutput, error)
}

var _ StartReplayAPI = (*eventbridge.Client)(nil)

// ReplayRequest asks an archive to re-send the events of [Since, Until) to
// the bus, delivered only through the given rules (one per worker to replay).
type ReplayRequest struct {
	ArchiveARN string
	BusARN     string
	RuleARNs   []string
	Since      time.Time
	// Until defaults to now.
	Until time.Time
	// Name defaults to "replay-" and a random UUID. EventBridge requires it
	// to be unique per account and region.
	Name string
}

// Replay starts an archive replay and returns its name. The replay runs
// asynchronously in EventBridge; workers see the events again on their
// queues and, being idempotent, change nothing that is already applied.
func Replay(ctx context.Context, client StartReplayAPI, req ReplayRequest) (string, error) {
	if req.Until.IsZero() {
		req.Until = time.Now()
	}
	if req.Name == "" {
		req.Name = "replay-" + uuid.NewString()
	}
	switch {
	case req.ArchiveARN == "":
		return "", errors.New("replay: archive ARN is required")
	case req.BusARN == "":
		return "", errors.New("replay: bus ARN is required")
	case len(req.RuleARNs) == 0:
		// Without a filter the replay would reach every worker.
		return "", errors.New("replay: at least one rule ARN is required")
	case req.Since.IsZero() || !req.Since.Before(req.Until):
		return "", fmt.Errorf("replay: since (%s) must be before until (%s)", req.Since.Format(time.RFC3339), req.Until.Format(time.RFC3339))
	}
	_, err := client.StartReplay(ctx, &eventbridge.StartReplayInput{
		ReplayName:     aws.String(req.Name),
		Description:    aws.String(fmt.Sprintf("%d rule(s) from %s", len(req.RuleARNs), req.Since.UTC().Format(time.RFC3339))),
		EventSourceArn: aws.String(req.ArchiveARN),
		EventStartTime: aws.Time(req.Since),
		EventEndTime:   aws.Time(req.Until),
		Destination:    &types.ReplayDestination{Arn: aws.String(req.BusARN), FilterArns: req.RuleARNs},
	})
	if err != nil {
		return "", fmt.Errorf("start replay %s: %w", req.Name, err)
	}
	return req.Name, nil
}
