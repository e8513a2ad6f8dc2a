package awsconf_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/parleychat/parley/internal/awsconf"
)

// isolate points the SDK's shared files at nothing and clears the
// variables the default chain reads, so the tests see only what they set.
func isolate(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	for k, v := range map[string]string{
		"AWS_CONFIG_FILE":             filepath.Join(dir, "config"),
		"AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "credentials"),
		"AWS_PROFILE":                 "",
		"AWS_REGION":                  "",
		"AWS_DEFAULT_REGION":          "",
		"AWS_ACCESS_KEY_ID":           "",
		"AWS_SECRET_ACCESS_KEY":       "",
		"AWS_SESSION_TOKEN":           "",
		"AWS_CA_BUNDLE":               "",
		"AWS_EC2_METADATA_DISABLED":   "true",
	} {
		t.Setenv(k, v)
	}
}

func TestLoadAWS(t *testing.T) {
	isolate(t)
	t.Setenv("AWS_REGION", "eu-central-1")
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDENV")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")

	cfg, err := awsconf.Load(t.Context(), awsconf.Options{})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if cfg.Region != "eu-central-1" {
		t.Errorf("region %q, want the environment's eu-central-1", cfg.Region)
	}
	if cfg.BaseEndpoint != nil {
		t.Errorf("base endpoint %q, want none for AWS itself", *cfg.BaseEndpoint)
	}
	creds, err := cfg.Credentials.Retrieve(t.Context())
	if err != nil {
		t.Fatalf("credentials: %v", err)
	}
	if creds.AccessKeyID != "AKIDENV" {
		t.Errorf("access key %q, want the default chain's AKIDENV", creds.AccessKeyID)
	}

	cfg, err = awsconf.Load(t.Context(), awsconf.Options{Region: "ap-south-1", Keys: awsconf.Keys{AccessKeyID: "ignored", SecretAccessKey: "ignored"}})
	if err != nil {
		t.Fatalf("Load with region: %v", err)
	}
	if cfg.Region != "ap-south-1" {
		t.Errorf("region %q, want the given ap-south-1", cfg.Region)
	}
	if creds, _ := cfg.Credentials.Retrieve(t.Context()); creds.AccessKeyID != "AKIDENV" {
		t.Errorf("access key %q: keys must not override the default chain on AWS", creds.AccessKeyID)
	}
}

func TestLoadAWSConfigError(t *testing.T) {
	isolate(t)
	t.Setenv("AWS_PROFILE", "no-such-profile")
	if _, err := awsconf.Load(t.Context(), awsconf.Options{}); err == nil {
		t.Fatal("Load with a missing profile succeeded")
	}
}

func TestLoadLocal(t *testing.T) {
	isolate(t)
	// None of these may reach a custom endpoint's configuration.
	t.Setenv("AWS_CA_BUNDLE", filepath.Join(t.TempDir(), "missing.pem"))
	t.Setenv("AWS_PROFILE", "no-such-profile")
	t.Setenv("AWS_REGION", "eu-west-3")

	tests := []struct {
		name       string
		opts       awsconf.Options
		wantRegion string
		wantKey    string
	}{
		{"defaults", awsconf.Options{Endpoint: "http://127.0.0.1:4100"}, "us-east-1", "local"},
		{"region and keys", awsconf.Options{Endpoint: "https://minio.internal:9000", Region: "eu-north-1",
			Keys: awsconf.Keys{AccessKeyID: "AKID", SecretAccessKey: "secret"}}, "eu-north-1", "AKID"},
		{"half a key pair", awsconf.Options{Endpoint: "http://localhost:8000", Keys: awsconf.Keys{AccessKeyID: "AKID"}}, "us-east-1", "local"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := awsconf.Load(t.Context(), tt.opts)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if cfg.Region != tt.wantRegion {
				t.Errorf("region %q, want %q", cfg.Region, tt.wantRegion)
			}
			if got := aws.ToString(cfg.BaseEndpoint); got != tt.opts.Endpoint {
				t.Errorf("base endpoint %q, want %q", got, tt.opts.Endpoint)
			}
			creds, err := cfg.Credentials.Retrieve(t.Context())
			if err != nil {
				t.Fatalf("credentials: %v", err)
			}
			if creds.AccessKeyID != tt.wantKey || creds.SecretAccessKey == "" {
				t.Errorf("credentials %q/%q, want access key %q and a secret", creds.AccessKeyID, creds.SecretAccessKey, tt.wantKey)
			}
		})
	}
}

// TestLocalClientReachesEndpoint makes a real call over plain HTTP with a
// CA bundle configured, which a loaded default configuration would refuse.
func TestLocalClientReachesEndpoint(t *testing.T) {
	isolate(t)
	t.Setenv("AWS_CA_BUNDLE", filepath.Join(t.TempDir(), "missing.pem"))
	var auth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth = r.Header.Get("Authorization")
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		_, _ = w.Write([]byte(`{"QueueUrls":[]}`))
	}))
	defer srv.Close()

	cfg, err := awsconf.Load(t.Context(), awsconf.Options{Endpoint: srv.URL})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if _, err := sqs.NewFromConfig(cfg).ListQueues(context.Background(), &sqs.ListQueuesInput{}); err != nil {
		t.Fatalf("ListQueues: %v", err)
	}
	if !strings.Contains(auth, "Credential=local/") || !strings.Contains(auth, "/us-east-1/sqs/") {
		t.Errorf("Authorization %q, want it signed with the local key for us-east-1", auth)
	}
}

func TestEndpointValidation(t *testing.T) {
	isolate(t)
	for _, ep := range []string{"127.0.0.1:4100", "localhost", "ftp://127.0.0.1", "http://", "://x", "http//127.0.0.1:1"} {
		_, err := awsconf.Load(t.Context(), awsconf.Options{Endpoint: ep})
		if err == nil {
			t.Errorf("Load(%q) succeeded", ep)
			continue
		}
		if !strings.Contains(err.Error(), "is not an http(s) URL") || !strings.Contains(err.Error(), ep) {
			t.Errorf("Load(%q) error %q: want it to name the endpoint and say what is expected", ep, err)
		}
		if err := awsconf.CheckEndpoint(ep); err == nil {
			t.Errorf("CheckEndpoint(%q) accepted it", ep)
		}
	}
	for _, ep := range []string{"http://127.0.0.1:4100", "https://abc.execute-api.eu-west-1.amazonaws.com/prod"} {
		if err := awsconf.CheckEndpoint(ep); err != nil {
			t.Errorf("CheckEndpoint(%q): %v", ep, err)
		}
	}
}
