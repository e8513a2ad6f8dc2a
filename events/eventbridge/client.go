package eventbridge

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
)

// NewClient returns an EventBridge client. With an empty endpoint it uses the
// default AWS configuration (environment, shared files, instance role);
// otherwise it talks to that endpoint (a local stand-in) with static
// credentials in us-east-1.
func NewClient(ctx context.Context, endpoint string) (*eventbridge.Client, error) {
	if endpoint == "" {
		cfg, err := config.LoadDefaultConfig(ctx)
		if err != nil {
			return nil, fmt.Errorf("load AWS config: %w", err)
		}
		return eventbridge.NewFromConfig(cfg), nil
	}
	// Built by hand: the default loader would also apply settings meant for
	// AWS (such as a CA bundle) to a plain-HTTP local endpoint.
	return eventbridge.NewFromConfig(aws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("local", "local", ""),
		BaseEndpoint: aws.String(endpoint),
	}), nil
}
