package fanout

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
)

// localRegion signs requests to the local gateway, which checks no
// signature but needs a region to be named.
const localRegion = "us-east-1"

// NewManagementClient returns a Management API client for endpoint.
//
// A loopback endpoint (http://127.0.0.1:8081, optionally with a /{stage}
// path) is the local gateway: the client gets static dummy credentials and
// no AWS configuration is read. Any other endpoint is an API Gateway
// callback URL, https://{api-id}.execute-api.{region}.amazonaws.com/{stage},
// used with the default AWS configuration; when that names no region, the
// region is taken from the URL.
//
// The SDK's own retries skip throttling errors, which Fanout retries per
// post: both together would multiply attempts and delays.
func NewManagementClient(ctx context.Context, endpoint string) (*apigatewaymanagementapi.Client, error) {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("fanout: management endpoint %q is not an http(s) URL", endpoint)
	}
	if isLoopback(u.Hostname()) {
		// Options rather than config.LoadDefaultConfig: nothing from the
		// environment (profiles, CA bundles, IMDS) applies to the local
		// gateway.
		return apigatewaymanagementapi.New(apigatewaymanagementapi.Options{
			Region:       localRegion,
			Credentials:  credentials.NewStaticCredentialsProvider("local", "local", ""),
			BaseEndpoint: aws.String(endpoint),
			Retryer:      sdkRetryer(),
		}), nil
	}
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("fanout: load AWS config: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = regionOf(u.Hostname())
	}
	if cfg.Region == "" {
		return nil, fmt.Errorf("fanout: no AWS region configured for management endpoint %q (set AWS_REGION)", endpoint)
	}
	return apigatewaymanagementapi.NewFromConfig(cfg, func(o *apigatewaymanagementapi.Options) {
		o.BaseEndpoint = aws.String(endpoint)
		o.Retryer = sdkRetryer()
	}), nil
}

// sdkRetryer is the SDK's standard retryer (transient network and 5xx
// errors) minus throttling.
func sdkRetryer() aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		noThrottle := retry.IsErrorRetryableFunc(func(err error) aws.Ternary {
			if isThrottle(err) {
				return aws.FalseTernary
			}
			return aws.UnknownTernary
		})
		// The first check with an answer wins.
		o.Retryables = append([]retry.IsErrorRetryable{noThrottle}, o.Retryables...)
	})
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// regionOf returns the region of an execute-api host name, or "".
func regionOf(host string) string {
	parts := strings.Split(host, ".")
	if len(parts) >= 5 && parts[1] == "execute-api" && parts[3] == "amazonaws" {
		return parts[2]
	}
	return ""
}
