package s3local_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
)

// signed returns a request signed in the Authorization header with the
// local key pair, its payload hash the body's SHA-256. edit, if not nil,
// changes the request before it is signed.
func signed(t *testing.T, method, url string, body []byte, edit func(*http.Request)) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	hash := hex.EncodeToString(sum[:])
	req.Header.Set("X-Amz-Content-Sha256", hash)
	if edit != nil {
		edit(req)
	}
	signer := v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true })
	creds := aws.Credentials{AccessKeyID: "local", SecretAccessKey: "local"}
	if err := signer.SignHTTP(t.Context(), creds, req, req.Header.Get("X-Amz-Content-Sha256"), "s3", "us-east-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	return req
}

func TestRefusesUnsigned(t *testing.T) {
	srv := start(t, t.TempDir())
	c := client(srv.endpoint)
	key := "chat/4/2026/11/d.png"
	body := payload(1000)
	put(t, c, key, body)
	obj := srv.endpoint + "/" + bucket + "/" + key

	for _, tt := range []struct{ name, method, url string }{
		{"list buckets", http.MethodGet, srv.endpoint + "/"},
		{"list objects", http.MethodGet, srv.endpoint + "/" + bucket + "?list-type=2"},
		{"get", http.MethodGet, obj},
		{"head", http.MethodHead, obj},
		{"put", http.MethodPut, obj},
		{"new object", http.MethodPut, srv.endpoint + "/" + bucket + "/chat/4/2026/11/new.png"},
		{"delete", http.MethodDelete, obj},
		{"create bucket", http.MethodPut, srv.endpoint + "/another"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), tt.method, tt.url, strings.NewReader("<html>swapped</html>"))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Fatalf("status %d, want 403", resp.StatusCode)
			}
			if tt.method != http.MethodHead {
				if status, code, msg := do(t, mustRequest(t, tt.method, tt.url)); status != http.StatusForbidden || code != "AccessDenied" {
					t.Errorf("refusal %d %q: %s", status, code, msg)
				}
			}
		})
	}
	if got, _ := getObject(t, c, key, nil); !bytes.Equal(got, body) {
		t.Error("an anonymous request changed the object")
	}
	_, err := c.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String("chat/4/2026/11/new.png")})
	if err == nil {
		t.Error("an anonymous PUT created an object")
	}
}

func mustRequest(t *testing.T, method, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestRefusesBadHeaderSignatures(t *testing.T) {
	srv := start(t, t.TempDir())
	key := "chat/5/2026/11/e.png"
	obj := srv.endpoint + "/" + bucket + "/" + key
	body := payload(2000)

	// The SDK itself, with keys the server does not know.
	for _, tt := range []struct{ name, accessKey, secret, code string }{
		{"wrong secret", "local", "guessed", "SignatureDoesNotMatch"},
		{"unknown access key", "AKIDOTHER", "local", "InvalidAccessKeyId"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := clientWith(srv.endpoint, tt.accessKey, tt.secret).ListObjectsV2(t.Context(), &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
			var apiErr smithy.APIError
			if !errors.As(err, &apiErr) || apiErr.ErrorCode() != tt.code {
				t.Fatalf("ListObjectsV2: %v, want %s", err, tt.code)
			}
		})
	}

	sum := sha256.Sum256(body)
	for _, tt := range []struct {
		name   string
		req    func() *http.Request
		status int
		code   string
	}{
		{"signed", func() *http.Request { return signed(t, http.MethodPut, obj, body, nil) }, http.StatusOK, ""},
		{"signature tampered", func() *http.Request {
			req := signed(t, http.MethodPut, obj, body, nil)
			a := req.Header.Get("Authorization")
			req.Header.Set("Authorization", a[:len(a)-4]+"0000")
			return req
		}, http.StatusForbidden, "SignatureDoesNotMatch"},
		{"signed header changed", func() *http.Request {
			req := signed(t, http.MethodPut, obj, body, func(r *http.Request) { r.Header.Set("Content-Type", "image/png") })
			req.Header.Set("Content-Type", "text/html")
			return req
		}, http.StatusForbidden, "SignatureDoesNotMatch"},
		{"other key", func() *http.Request {
			req := signed(t, http.MethodPut, obj, body, nil)
			req.URL.Path = "/" + bucket + "/chat/5/2026/11/other.png"
			return req
		}, http.StatusForbidden, "SignatureDoesNotMatch"},
		{"body swapped", func() *http.Request {
			req := signed(t, http.MethodPut, obj, body, nil)
			swapped := bytes.Repeat([]byte{'x'}, len(body))
			req.Body, req.GetBody = nil, nil
			req.Body = readCloser{bytes.NewReader(swapped)}
			return req
		}, http.StatusBadRequest, "XAmzContentSHA256Mismatch"},
		{"no payload hash", func() *http.Request {
			return signed(t, http.MethodPut, obj, body, func(r *http.Request) { r.Header.Del("X-Amz-Content-Sha256") })
		}, http.StatusBadRequest, "InvalidRequest"},
		{"streaming payload", func() *http.Request {
			return signed(t, http.MethodPut, obj, body, func(r *http.Request) {
				r.Header.Set("X-Amz-Content-Sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
			})
		}, http.StatusNotImplemented, "NotImplemented"},
		{"signature version 2", func() *http.Request {
			req := mustRequest(t, http.MethodGet, obj)
			req.Header.Set("Authorization", "AWS local:c2lnbmF0dXJl")
			return req
		}, http.StatusBadRequest, "InvalidRequest"},
		{"malformed", func() *http.Request {
			req := mustRequest(t, http.MethodGet, obj)
			req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=local/20261201/us-east-1/s3/aws4_request")
			return req
		}, http.StatusBadRequest, "AuthorizationHeaderMalformed"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if status, code, msg := do(t, tt.req()); status != tt.status || code != tt.code {
				t.Fatalf("%d %q, want %d %q: %s", status, code, tt.status, tt.code, msg)
			}
		})
	}
	// Only the signed PUT was stored.
	got, _ := getObject(t, client(srv.endpoint), key, nil)
	if gotSum := sha256.Sum256(got); gotSum != sum {
		t.Errorf("stored %d bytes that are not the signed body", len(got))
	}
	if _, err := client(srv.endpoint).HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String("chat/5/2026/11/other.png")}); err == nil {
		t.Error("a request signed for one key wrote another")
	}
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

func TestClockSkew(t *testing.T) {
	srv := start(t, t.TempDir())
	c := client(srv.endpoint)
	list := func() error {
		_, err := c.ListObjectsV2(t.Context(), &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
		return err
	}
	for _, tt := range []struct {
		name  string
		ahead time.Duration
		code  string
	}{
		{"in time", 0, ""},
		{"within 15 minutes", 14 * time.Minute, ""},
		{"server ahead", 16 * time.Minute, "RequestTimeTooSkewed"},
		{"server behind", -16 * time.Minute, "RequestTimeTooSkewed"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv.ahead(tt.ahead)
			defer srv.ahead(0)
			err := list()
			var apiErr smithy.APIError
			switch {
			case tt.code == "" && err != nil:
				t.Fatalf("ListObjectsV2: %v", err)
			case tt.code != "" && (!errors.As(err, &apiErr) || apiErr.ErrorCode() != tt.code):
				t.Fatalf("ListObjectsV2: %v, want %s", err, tt.code)
			}
		})
	}
}

func TestRefusesUnsafeKeys(t *testing.T) {
	srv := start(t, t.TempDir())
	for _, tt := range []struct{ name, path string }{
		{"dot dot", "/" + bucket + "/chat/../../escaped"},
		{"encoded dot dot", "/" + bucket + "/chat/%2e%2e/%2E%2E/escaped"},
		{"dot dot bucket", "/../escaped"},
		{"dot", "/" + bucket + "/./escaped"},
		{"empty segment", "/" + bucket + "/chat//escaped"},
		{"leading slash", "/" + bucket + "//escaped"},
		{"trailing slash", "/" + bucket + "/chat/escaped/"},
		{"backslash", "/" + bucket + "/chat/..%5C..%5Cescaped"},
		{"NUL", "/" + bucket + "/chat/escaped%00.png"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := signed(t, http.MethodPut, srv.endpoint+"/"+bucket+"/placeholder", []byte("x"), nil)
			req.URL.RawPath, req.URL.Path = "", ""
			req.URL.Opaque = "//" + req.URL.Host + tt.path
			if status, code, msg := do(t, req); status != http.StatusBadRequest || code != "InvalidArgument" {
				t.Fatalf("%d %q, want 400 InvalidArgument: %s", status, code, msg)
			}
		})
	}
	// Nothing was written, inside the store or beside it.
	err := filepath.WalkDir(filepath.Dir(srv.dir), func(path string, d os.DirEntry, err error) error {
		if err == nil && strings.Contains(d.Name(), "escaped") {
			t.Errorf("%s was written", path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestCORS(t *testing.T) {
	srv := start(t, t.TempDir())
	c := client(srv.endpoint)
	key := "chat/6/2026/11/f.png"
	put(t, c, key, payload(100))
	get, err := s3.NewPresignClient(c).PresignGetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	head, err := s3.NewPresignClient(c).PresignHeadObject(t.Context(), &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	obj := srv.endpoint + "/" + bucket + "/" + key

	preflight := func(t *testing.T, origin, method, headers string) *http.Response {
		t.Helper()
		req := mustRequest(t, http.MethodOptions, obj)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", method)
		if headers != "" {
			req.Header.Set("Access-Control-Request-Headers", headers)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	t.Run("preflight allowed", func(t *testing.T) {
		resp := preflight(t, origin, http.MethodPut, "content-type")
		h := resp.Header
		if resp.StatusCode != http.StatusOK || h.Get("Access-Control-Allow-Origin") != origin ||
			h.Get("Access-Control-Allow-Methods") != "GET, HEAD, PUT" || h.Get("Access-Control-Allow-Headers") != "content-type" {
			t.Fatalf("%d %v", resp.StatusCode, h)
		}
	})
	for _, tt := range []struct{ name, origin, method, headers string }{
		{"other origin", "https://evil.example", http.MethodPut, "content-type"},
		{"delete", origin, http.MethodDelete, ""},
		{"post", origin, http.MethodPost, ""},
		{"other header", origin, http.MethodPut, "content-type, x-amz-acl"},
	} {
		t.Run("preflight "+tt.name, func(t *testing.T) {
			resp := preflight(t, tt.origin, tt.method, tt.headers)
			if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Access-Control-Allow-Origin") != "" {
				t.Fatalf("%d %v, want 403 without Access-Control-Allow-Origin", resp.StatusCode, resp.Header)
			}
		})
	}
	for _, tt := range []struct {
		name, method, url, origin, want string
	}{
		{"get from the allowed origin", http.MethodGet, get.URL, origin, origin},
		{"get from another origin", http.MethodGet, get.URL, "https://evil.example", ""},
		{"head from the allowed origin", http.MethodHead, head.URL, origin, origin},
		{"head from another origin", http.MethodHead, head.URL, "https://evil.example", ""},
		{"head without an origin", http.MethodHead, head.URL, "", ""},
		{"refusal to the allowed origin", http.MethodGet, obj, origin, origin},
		{"delete from the allowed origin", http.MethodDelete, obj, origin, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := mustRequest(t, tt.method, tt.url)
			if tt.origin != "" {
				req.Header.Set("Origin", tt.origin)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := resp.Header.Get("Access-Control-Allow-Origin"); got != tt.want {
				t.Fatalf("Access-Control-Allow-Origin %q, want %q", got, tt.want)
			}
		})
	}
}

func TestNoSniff(t *testing.T) {
	srv := start(t, t.TempDir())
	c := client(srv.endpoint)
	key := "chat/7/2026/11/g.png"
	put(t, c, key, []byte("<html><script>alert(1)</script></html>"))
	get, err := s3.NewPresignClient(c).PresignGetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(get.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("%d, X-Content-Type-Options %q", resp.StatusCode, resp.Header.Get("X-Content-Type-Options"))
	}
}
