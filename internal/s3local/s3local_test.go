package s3local_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/parleychat/parley/internal/s3local"
)

const bucket = "chat-media"

// start serves a Server over dir on a loopback listener until the test ends
// (or stop is called) and returns its base URL.
func start(t *testing.T, dir string) (endpoint string, stop func()) {
	t.Helper()
	srv, err := s3local.New(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := srv.EnsureBucket(t.Context(), bucket); err != nil {
		t.Fatalf("EnsureBucket: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	var stopped bool
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}
	t.Cleanup(stop)
	return "http://" + ln.Addr().String(), stop
}

func client(endpoint string) *s3.Client {
	return s3.New(s3.Options{
		Region:                     "us-east-1",
		BaseEndpoint:               aws.String(endpoint),
		UsePathStyle:               true,
		Credentials:                credentials.NewStaticCredentialsProvider("local", "local", ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
}

func put(t *testing.T, c *s3.Client, key string, body []byte) {
	t.Helper()
	_, err := c.PutObject(t.Context(), &s3.PutObjectInput{
		Bucket:      aws.String(bucket),
		Key:         aws.String(key),
		Body:        bytes.NewReader(body),
		ContentType: aws.String("image/png"),
	})
	if err != nil {
		t.Fatalf("PutObject: %v", err)
	}
}

func get(t *testing.T, c *s3.Client, key string, rng *string) ([]byte, string) {
	t.Helper()
	out, err := c.GetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Range: rng})
	if err != nil {
		t.Fatalf("GetObject: %v", err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return b, aws.ToString(out.ContentType)
}

func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

func TestSDKRoundTrip(t *testing.T) {
	endpoint, _ := start(t, t.TempDir())
	c := client(endpoint)
	body := payload(300_000)
	key := "chat/1/2026/11/a.png"
	put(t, c, key, body)

	got, ct := get(t, c, key, nil)
	if !bytes.Equal(got, body) {
		t.Fatalf("body differs: got %d bytes, want %d", len(got), len(body))
	}
	if ct != "image/png" {
		t.Errorf("content type = %q", ct)
	}
	part, _ := get(t, c, key, aws.String("bytes=10-19"))
	if !bytes.Equal(part, body[10:20]) {
		t.Errorf("ranged get = %v, want %v", part, body[10:20])
	}
	head, err := c.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("HeadObject: %v", err)
	}
	if aws.ToInt64(head.ContentLength) != int64(len(body)) || head.LastModified == nil {
		t.Errorf("head: length %d, last modified %v", aws.ToInt64(head.ContentLength), head.LastModified)
	}

	_, err = c.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String("chat/missing")})
	var nf *types.NotFound
	if !errors.As(err, &nf) {
		t.Errorf("head of missing key: %v, want NotFound", err)
	}
}

func TestPresignedURLs(t *testing.T) {
	endpoint, _ := start(t, t.TempDir())
	c := client(endpoint)
	presign := s3.NewPresignClient(c, s3.WithPresignExpires(time.Minute))
	key := "chat/2/2026/11/b.jpg"
	body := payload(4096)

	put, err := presign.PresignPutObject(t.Context(), &s3.PutObjectInput{
		Bucket: aws.String(bucket), Key: aws.String(key),
		ContentType: aws.String("image/jpeg"), ContentLength: aws.Int64(int64(len(body))),
	})
	if err != nil {
		t.Fatalf("PresignPutObject: %v", err)
	}
	get, err := presign.PresignGetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("PresignGetObject: %v", err)
	}

	tests := []struct {
		name   string
		method string
		url    string
		body   []byte
		want   int
	}{
		{"put", put.Method, put.URL, body, http.StatusOK},
		{"get", get.Method, get.URL, nil, http.StatusOK},
		{"expired put", put.Method, backdate(t, put.URL, 2*time.Minute), body, http.StatusForbidden},
		{"expired get", get.Method, backdate(t, get.URL, 2*time.Minute), nil, http.StatusForbidden},
		{"malformed expiry", get.Method, strings.Replace(get.URL, "X-Amz-Expires=60", "X-Amz-Expires=soon", 1), nil, http.StatusForbidden},
		{"still valid", get.Method, backdate(t, get.URL, 30*time.Second), nil, http.StatusOK},
	}
	hc := &http.Client{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rd io.Reader
			if tt.body != nil {
				rd = bytes.NewReader(tt.body)
			}
			req, err := http.NewRequestWithContext(t.Context(), tt.method, tt.url, rd)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "image/jpeg")
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.want, got)
			}
			if tt.method == http.MethodGet && tt.want == http.StatusOK && !bytes.Equal(got, body) {
				t.Errorf("downloaded %d bytes that differ from the upload", len(got))
			}
			if tt.want == http.StatusForbidden && !bytes.Contains(got, []byte("<Code>")) {
				t.Errorf("error body is not an S3 error: %s", got)
			}
		})
	}
}

// backdate moves a presigned URL's signing time into the past. The server
// ignores signatures, so only the expiry check sees the change.
func backdate(t *testing.T, raw string, by time.Duration) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	signed, err := time.Parse("20060102T150405Z", q.Get("X-Amz-Date"))
	if err != nil {
		t.Fatal(err)
	}
	q.Set("X-Amz-Date", signed.Add(-by).Format("20060102T150405Z"))
	u.RawQuery = q.Encode()
	return u.String()
}

func TestRestartKeepsObjects(t *testing.T) {
	dir := t.TempDir()
	endpoint, stop := start(t, dir)
	body := payload(70_000)
	key := "chat/3/2026/11/c.png"
	put(t, client(endpoint), key, body)
	stop()

	endpoint, _ = start(t, dir) // EnsureBucket on an existing bucket is a no-op
	got, ct := get(t, client(endpoint), key, nil)
	if !bytes.Equal(got, body) || ct != "image/png" {
		t.Fatalf("after restart: %d bytes (equal: %v), content type %q", len(got), bytes.Equal(got, body), ct)
	}
}

func TestEnsureBucket(t *testing.T) {
	srv, err := s3local.New(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		bucket  string
		wantErr bool
	}{
		{"new", "media", false},
		{"again", "media", false},
		{"invalid name", "No_Such..Bucket", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := srv.EnsureBucket(t.Context(), tt.bucket)
			if (err != nil) != tt.wantErr {
				t.Fatalf("EnsureBucket(%q) = %v, want error: %v", tt.bucket, err, tt.wantErr)
			}
		})
	}
	if _, err := s3local.New("", nil); err == nil {
		t.Error("New with an empty dir succeeded")
	}
}
