package eventbridge

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/service/eventbridge"

	"github.com/parleychat/parley/internal/awsconf"
)

// NewClient returns an EventBridge client for AWS itself or, when
// o.Endpoint is set, for that local stand-in (see awsconf.Load).
func NewClient(ctx context.Context, o awsconf.Options) (*eventbridge.Client, error) {
	cfg, err := awsconf.Load(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("eventbridge: %w", err)
	}
	return eventbridge.NewFromConfig(cfg), nil
}
