package s3local_test

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/parleychat/parley/internal/s3local"
)

const (
	bucket = "chat-media"
	// origin is the one browser origin the test servers allow.
	origin = "http://127.0.0.1:8080"
)

// server is a Server on a loopback listener with a clock the test moves.
type server struct {
	endpoint string
	dir      string
	stop     func()
	skew     atomic.Int64 // how far the server's clock is ahead, in ns
}

// ahead moves the server's clock d ahead of the real one.
func (s *server) ahead(d time.Duration) { s.skew.Store(int64(d)) }

// start serves a Server over dir on a loopback listener until the test ends
// (or stop is called).
func start(t *testing.T, dir string) *server {
	t.Helper()
	s := &server{dir: dir}
	srv, err := s3local.New(dir, s3local.Config{
		AllowedOrigins: []string{origin},
		Now:            func() time.Time { return time.Now().Add(time.Duration(s.skew.Load())) },
	}, slog.New(slog.DiscardHandler))
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
	s.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}
	t.Cleanup(s.stop)
	s.endpoint = "http://" + ln.Addr().String()
	return s
}

// client signs with the local key pair the server accepts by default.
func client(endpoint string) *s3.Client { return clientWith(endpoint, "local", "local") }

func clientWith(endpoint, accessKey, secret string) *s3.Client {
	return s3.New(s3.Options{
		Region:                     "us-east-1",
		BaseEndpoint:               aws.String(endpoint),
		UsePathStyle:               true,
		Credentials:                credentials.NewStaticCredentialsProvider(accessKey, secret, ""),
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

func getObject(t *testing.T, c *s3.Client, key string, rng *string) ([]byte, string) {
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
	c := client(start(t, t.TempDir()).endpoint)
	body := payload(300_000)
	key := "chat/1/2026/11/a.png"
	put(t, c, key, body)

	got, ct := getObject(t, c, key, nil)
	if !bytes.Equal(got, body) {
		t.Fatalf("body differs: got %d bytes, want %d", len(got), len(body))
	}
	if ct != "image/png" {
		t.Errorf("content type = %q", ct)
	}
	part, _ := getObject(t, c, key, aws.String("bytes=10-19"))
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
	srv := start(t, t.TempDir())
	c := client(srv.endpoint)
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
	otherKey, err := s3.NewPresignClient(clientWith(srv.endpoint, "local", "guessed")).PresignGetObject(t.Context(),
		&s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("PresignGetObject: %v", err)
	}

	tests := []struct {
		name        string
		method      string
		url         string
		body        []byte
		contentType string
		ahead       time.Duration // the server's clock
		want        int
		code        string
	}{
		{"put", put.Method, put.URL, body, "image/jpeg", 0, http.StatusOK, ""},
		{"get", get.Method, get.URL, nil, "", 0, http.StatusOK, ""},
		{"still valid", get.Method, get.URL, nil, "", 30 * time.Second, http.StatusOK, ""},
		{"expired put", put.Method, put.URL, body, "image/jpeg", 2 * time.Minute, http.StatusForbidden, "AccessDenied"},
		{"expired get", get.Method, get.URL, nil, "", 2 * time.Minute, http.StatusForbidden, "AccessDenied"},
		{"not yet valid", get.Method, get.URL, nil, "", -20 * time.Minute, http.StatusForbidden, "AccessDenied"},
		{"expiry removed", get.Method, without(t, get.URL, "X-Amz-Expires"), nil, "", 0, http.StatusForbidden, "AuthorizationQueryParametersError"},
		{"date removed", get.Method, without(t, get.URL, "X-Amz-Date"), nil, "", 0, http.StatusForbidden, "AuthorizationQueryParametersError"},
		{"signature removed", get.Method, without(t, get.URL, "X-Amz-Signature"), nil, "", 0, http.StatusForbidden, "AuthorizationQueryParametersError"},
		{"malformed expiry", get.Method, set(t, get.URL, "X-Amz-Expires", "soon"), nil, "", 0, http.StatusForbidden, "AuthorizationQueryParametersError"},
		{"expiry extended", get.Method, set(t, get.URL, "X-Amz-Expires", "604800"), nil, "", 2 * time.Minute, http.StatusForbidden, "SignatureDoesNotMatch"},
		{"date moved", get.Method, backdate(t, get.URL, -time.Minute), nil, "", 0, http.StatusForbidden, "SignatureDoesNotMatch"},
		{"signature tampered", get.Method, set(t, get.URL, "X-Amz-Signature", strings.Repeat("0", 64)), nil, "", 0, http.StatusForbidden, "SignatureDoesNotMatch"},
		{"other key", get.Method, strings.Replace(get.URL, key, "chat/2/2026/11/other.jpg", 1), nil, "", 0, http.StatusForbidden, "SignatureDoesNotMatch"},
		{"put URL to delete", http.MethodDelete, put.URL, nil, "image/jpeg", 0, http.StatusForbidden, "SignatureDoesNotMatch"},
		{"other content type", put.Method, put.URL, body, "text/html", 0, http.StatusForbidden, "SignatureDoesNotMatch"},
		{"other length", put.Method, put.URL, body[:100], "image/jpeg", 0, http.StatusForbidden, "SignatureDoesNotMatch"},
		{"wrong secret", otherKey.Method, otherKey.URL, nil, "", 0, http.StatusForbidden, "SignatureDoesNotMatch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv.ahead(tt.ahead)
			defer srv.ahead(0)
			var rd io.Reader
			if tt.body != nil {
				rd = bytes.NewReader(tt.body)
			}
			req, err := http.NewRequestWithContext(t.Context(), tt.method, tt.url, rd)
			if err != nil {
				t.Fatal(err)
			}
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			status, code, got := do(t, req)
			if status != tt.want || code != tt.code {
				t.Fatalf("status %d %q, want %d %q: %s", status, code, tt.want, tt.code, got)
			}
			if tt.method == http.MethodGet && tt.want == http.StatusOK && !bytes.Equal(got, body) {
				t.Errorf("downloaded %d bytes that differ from the upload", len(got))
			}
		})
	}
	// None of the refused requests changed the object.
	if got, ct := getObject(t, c, key, nil); !bytes.Equal(got, body) || ct != "image/jpeg" {
		t.Errorf("stored object: %d bytes (equal: %v), %q", len(got), bytes.Equal(got, body), ct)
	}
}

// do sends req with a plain HTTP client and returns the status, the S3
// error code of a refusal, and the body.
func do(t *testing.T, req *http.Request) (status int, code string, body []byte) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode >= 300 {
		var e struct{ Code string }
		if err := xml.Unmarshal(body, &e); err != nil {
			t.Fatalf("status %d without an S3 error document: %q", resp.StatusCode, body)
		}
		code = e.Code
	}
	return resp.StatusCode, code, body
}

func editQuery(t *testing.T, raw string, edit func(url.Values)) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	edit(q)
	u.RawQuery = q.Encode()
	return u.String()
}

func without(t *testing.T, raw, param string) string {
	return editQuery(t, raw, func(q url.Values) { q.Del(param) })
}

func set(t *testing.T, raw, param, value string) string {
	return editQuery(t, raw, func(q url.Values) { q.Set(param, value) })
}

// backdate moves a presigned URL's signing time into the past without
// signing it again.
func backdate(t *testing.T, raw string, by time.Duration) string {
	t.Helper()
	return editQuery(t, raw, func(q url.Values) {
		signed, err := time.Parse("20060102T150405Z", q.Get("X-Amz-Date"))
		if err != nil {
			t.Fatal(err)
		}
		q.Set("X-Amz-Date", signed.Add(-by).Format("20060102T150405Z"))
	})
}

func TestRestartKeepsObjects(t *testing.T) {
	dir := t.TempDir()
	srv := start(t, dir)
	body := payload(70_000)
	key := "chat/3/2026/11/c.png"
	put(t, client(srv.endpoint), key, body)
	srv.stop()

	srv = start(t, dir) // EnsureBucket on an existing bucket is a no-op
	got, ct := getObject(t, client(srv.endpoint), key, nil)
	if !bytes.Equal(got, body) || ct != "image/png" {
		t.Fatalf("after restart: %d bytes (equal: %v), content type %q", len(got), bytes.Equal(got, body), ct)
	}
}

func TestEnsureBucket(t *testing.T) {
	srv, err := s3local.New(t.TempDir(), s3local.Config{}, nil)
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
	if _, err := s3local.New("", s3local.Config{}, nil); err == nil {
		t.Error("New with an empty dir succeeded")
	}
}

// A presigned PUT cannot be turned into something it was not signed for by
// adding x-amz-* headers (x-amz-copy-source would copy another object,
// wherever its path points).
func TestUnsignedAmzHeadersAreRefused(t *testing.T) {
	srv := start(t, t.TempDir())
	c := client(srv.endpoint)
	secret := "chat/9/2026/11/secret.jpg"
	put(t, c, secret, payload(64))
	key := "chat/2/2026/11/c.jpg"
	up, err := s3.NewPresignClient(c, s3.WithPresignExpires(time.Minute)).PresignPutObject(t.Context(), &s3.PutObjectInput{
		Bucket: aws.String(bucket), Key: aws.String(key), ContentType: aws.String("image/jpeg"), ContentLength: aws.Int64(4),
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, value := range map[string]string{
		"X-Amz-Copy-Source": bucket + "/" + secret,
		"X-Amz-Meta-Owner":  "someone else",
	} {
		req, err := http.NewRequestWithContext(t.Context(), up.Method, up.URL, bytes.NewReader([]byte("abcd")))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "image/jpeg")
		req.Header.Set(name, value)
		if status, code, body := do(t, req); status != http.StatusForbidden || code != "AccessDenied" {
			t.Errorf("%s: status %d %q, want 403 AccessDenied: %s", name, status, code, body)
		}
	}
	if _, err := c.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)}); err == nil {
		t.Error("a refused PUT stored the object")
	}
}
