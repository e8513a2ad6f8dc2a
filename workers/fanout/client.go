package fanout

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsretry "github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"

	"github.com/parleychat/parley/internal/awsconf"
	"github.com/parleychat/parley/internal/gateway"
)

// NewManagementClient returns a Management API client for endpoint.
//
// A loopback endpoint (http://127.0.0.1:8081, optionally with a /{stage}
// path) is the local gateway: it is a custom endpoint for awsconf.Load,
// signed with keys (the local pair when empty), every request carries the
// gateway's shared secret, and no AWS configuration is read. Any other endpoint is an API Gateway callback URL,
// https://{api-id}.execute-api.{region}.amazonaws.com/{stage}, used with the
// default AWS configuration; when that names no region, the region is taken
// from the URL.
//
// The SDK's own retries skip throttling errors, which Fanout retries per
// post: both together would multiply attempts and delays.
func NewManagementClient(ctx context.Context, endpoint string, keys awsconf.Keys, secret string) (*apigatewaymanagementapi.Client, error) {
	if err := awsconf.CheckEndpoint(endpoint); err != nil {
		return nil, fmt.Errorf("fanout: management %w", err)
	}
	u, _ := url.Parse(endpoint) // CheckEndpoint parsed it
	host := u.Hostname()
	var o awsconf.Options // AWS itself
	var local []func(*apigatewaymanagementapi.Options)
	if isLoopback(host) {
		if secret == "" {
			return nil, fmt.Errorf("fanout: the local gateway at %q needs its management secret", endpoint)
		}
		o = awsconf.Options{Endpoint: endpoint, Keys: keys}
		local = append(local, gateway.WithSecret(secret))
	}
	cfg, err := awsconf.Load(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("fanout: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = regionOf(host)
	}
	if cfg.Region == "" {
		return nil, fmt.Errorf("fanout: no AWS region configured for management endpoint %q (set AWS_REGION)", endpoint)
	}
	opts := append([]func(*apigatewaymanagementapi.Options){func(o *apigatewaymanagementapi.Options) {
		o.BaseEndpoint = aws.String(endpoint)
		o.Retryer = sdkRetryer()
		o.HTTPClient = keepAlive(cfg.HTTPClient)
	}}, local...)
	return apigatewaymanagementapi.NewFromConfig(cfg, opts...), nil
}

// keepAlive keeps an idle connection for each post fanout may have in
// flight: the SDK's default keeps 10 per host, and under load every post
// beyond those dialed a new connection (and closed it), which cost more
// than the post.
func keepAlive(c aws.HTTPClient) aws.HTTPClient {
	return awsconf.WithTransportOptions(c, func(t *http.Transport) {
		t.MaxIdleConns = 2 * maxConcurrentPosts
		t.MaxIdleConnsPerHost = 2 * maxConcurrentPosts
	})
}

// sdkRetryer is the SDK's standard retryer (transient network and 5xx
// errors) minus throttling.
func sdkRetryer() aws.Retryer {
	return awsretry.NewStandard(func(o *awsretry.StandardOptions) {
		noThrottle := awsretry.IsErrorRetryableFunc(func(err error) aws.Ternary {
			if isThrottle(err) {
				return aws.FalseTernary
			}
			return aws.UnknownTernary
		})
		// The first check with an answer wins.
		o.Retryables = append([]awsretry.IsErrorRetryable{noThrottle}, o.Retryables...)
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
