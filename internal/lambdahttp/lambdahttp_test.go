package lambdahttp

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"testing"

	lambdaevents "github.com/aws/aws-lambda-go/events"
)

func TestHandlerRoundTrip(t *testing.T) {
	raw, err := os.ReadFile("testdata/http_api_v2_post.json")
	if err != nil {
		t.Fatal(err)
	}
	var ev lambdaevents.APIGatewayV2HTTPRequest
	if err := json.Unmarshal(raw, &ev); err != nil {
		t.Fatal(err)
	}
	var seen struct {
		method, path, query, auth, cookie, host string
		body                                    string
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		seen.method, seen.path, seen.query = r.Method, r.URL.Path, r.URL.RawQuery
		seen.auth, seen.cookie, seen.host, seen.body = r.Header.Get("Authorization"), r.Header.Get("Cookie"), r.Host, string(b)
		http.SetCookie(w, &http.Cookie{Name: "s", Value: "1"})
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"ok":true}`))
	})
	resp, err := Handler(h)(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	if seen.method != "POST" || seen.path != "/api/v1/chat/messages" || seen.query != "dry=1" ||
		seen.auth != "Bearer abc" || seen.cookie != "a=1; b=2" || seen.body != `{"recipient_id":2}` ||
		seen.host != "abc123.execute-api.us-east-1.amazonaws.com" {
		t.Fatalf("request rebuilt wrongly: %+v", seen)
	}
	if resp.StatusCode != http.StatusCreated || resp.Body != `{"ok":true}` || resp.IsBase64Encoded ||
		resp.Headers["Content-Type"] != "application/json" || len(resp.Cookies) != 1 || resp.Cookies[0] != "s=1" {
		t.Fatalf("response = %+v", resp)
	}
}

func TestBinaryBodyIsBase64(t *testing.T) {
	resp := Response(200, http.Header{}, []byte{0xff, 0xd8, 0xff})
	if !resp.IsBase64Encoded || resp.Body != "/9j/" {
		t.Fatalf("binary body not base64: %+v", resp)
	}
}

func TestBadBase64IsRefused(t *testing.T) {
	ev := lambdaevents.APIGatewayV2HTTPRequest{RawPath: "/health", Body: "***", IsBase64Encoded: true}
	resp, err := Handler(http.NotFoundHandler())(context.Background(), ev)
	if err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("got %d, %v", resp.StatusCode, err)
	}
}
