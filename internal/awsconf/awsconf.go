// Package awsconf builds the one aws.Config every AWS client of the app
// starts from: the SDK's default configuration for AWS itself, or a
// configuration built by hand for a local or custom endpoint (goaws,
// dynalite, gofakes3, the local WebSocket gateway, an httptest server).
//
// Service-specific settings (S3 path-style addressing and checksums, a
// retryer) stay with the client that needs them, as service options.
package awsconf

import (
	"context"
	"fmt"
	"net/url"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// DefaultRegion is the region requests to a custom endpoint are signed for
// when none is given: local stand-ins ignore it, but the SDK needs one.
const DefaultRegion = "us-east-1"

// localKey is the access key ID and secret that sign requests to a custom
// endpoint when no keys are given. The embedded S3 server checks signatures
// against the same pair (see Keys.OrLocal); other stand-ins check none.
const localKey = "local"

// Keys are a static access key pair.
type Keys struct {
	AccessKeyID     string
	SecretAccessKey string
}

func (k Keys) complete() bool { return k.AccessKeyID != "" && k.SecretAccessKey != "" }

// OrLocal returns k, or the fixed local pair unless both of k's halves are
// set: what a client of a custom endpoint signs with, and so what a local
// server verifies against.
func (k Keys) OrLocal() Keys {
	if k.complete() {
		return k
	}
	return Keys{AccessKeyID: localKey, SecretAccessKey: localKey}
}

// Options say which AWS to talk to.
type Options struct {
	// Endpoint is the base URL of a local or custom endpoint; empty means
	// AWS itself.
	Endpoint string
	// Region overrides the region. For AWS itself empty leaves it to the
	// default chain (AWS_REGION, shared config); for a custom endpoint it
	// defaults to DefaultRegion.
	Region string
	// Keys sign requests to a custom endpoint (typically AWS_ACCESS_KEY_ID
	// and AWS_SECRET_ACCESS_KEY, read by the caller). Unless both are set,
	// a fixed local pair is used. AWS itself ignores them: credentials come from
	// the default chain there, which also knows session tokens and roles.
	Keys Keys
}

// Local reports whether o names a custom endpoint rather than AWS itself.
func (o Options) Local() bool { return o.Endpoint != "" }

// Load returns the configuration for o.
//
// For AWS itself it is config.LoadDefaultConfig: environment, shared files,
// instance or task role. For a custom endpoint it is built by hand, so that
// nothing meant for AWS applies to it: no profile, no CA bundle
// (AWS_CA_BUNDLE would break a plain-HTTP endpoint), no instance metadata
// probe (which stalls off AWS).
func Load(ctx context.Context, o Options) (aws.Config, error) {
	if !o.Local() {
		var opts []func(*config.LoadOptions) error
		if o.Region != "" {
			opts = append(opts, config.WithRegion(o.Region))
		}
		cfg, err := config.LoadDefaultConfig(ctx, opts...)
		if err != nil {
			return aws.Config{}, fmt.Errorf("load AWS config: %w", err)
		}
		cfg.HTTPClient = newHTTPClient(cfg.HTTPClient)
		return cfg, nil
	}
	if err := CheckEndpoint(o.Endpoint); err != nil {
		return aws.Config{}, err
	}
	region := o.Region
	if region == "" {
		region = DefaultRegion
	}
	keys := o.Keys.OrLocal()
	return aws.Config{
		Region:       region,
		Credentials:  credentials.NewStaticCredentialsProvider(keys.AccessKeyID, keys.SecretAccessKey, ""),
		BaseEndpoint: aws.String(o.Endpoint),
		HTTPClient:   newHTTPClient(nil),
	}, nil
}

// CheckEndpoint returns an error unless endpoint is an absolute http(s) URL
// with a host.
func CheckEndpoint(endpoint string) error {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("endpoint %q is not an http(s) URL", endpoint)
	}
	return nil
}
