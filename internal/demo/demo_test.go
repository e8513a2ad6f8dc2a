package demo_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/parleychat/parley/internal/demo"
)

// serve runs the client on a real HTTP server with a stand-in issuer
// that returns a recognisable token.
func serve(t *testing.T, issue demo.Issuer) string {
	t.Helper()
	mux := http.NewServeMux()
	demo.New(issue).Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

func do(t *testing.T, method, url, body string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestFiles(t *testing.T) {
	base := serve(t, nil)
	for _, c := range []struct{ path, typ, has string }{
		{"/", "text/html", `src="/demo/app.js"`},
		{"/demo/app.js", "javascript", "after_seq"},
		{"/demo/style.css", "text/css", "#messages"},
	} {
		code, hdr, body := do(t, "GET", base+c.path, "")
		if code != http.StatusOK || !strings.Contains(hdr.Get("Content-Type"), c.typ) || !strings.Contains(body, c.has) {
			t.Errorf("GET %s = %d %s, want %s containing %q", c.path, code, hdr.Get("Content-Type"), c.typ, c.has)
		}
		if hdr.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no nosniff", c.path)
		}
	}
	if code, _, _ := do(t, "GET", base+"/demo/missing.js", ""); code != http.StatusNotFound {
		t.Errorf("GET a missing file = %d, want 404", code)
	}
}

func TestToken(t *testing.T) {
	base := serve(t, func(user int64) (string, error) {
		if user == 13 {
			return "", errors.New("signing failed")
		}
		return "token-for-" + strconv.FormatInt(user, 10), nil
	})
	code, _, body := do(t, "POST", base+demo.TokenPath, `{"user_id":42}`)
	var got struct {
		Token  string `json:"token"`
		UserID int64  `json:"user_id"`
	}
	if code != http.StatusOK || json.Unmarshal([]byte(body), &got) != nil || got.Token != "token-for-42" || got.UserID != 42 {
		t.Fatalf("POST %s = %d %s", demo.TokenPath, code, body)
	}
	for _, c := range []struct{ name, body, reason string }{
		{"empty", ``, "user_id"},
		{"not JSON", `user_id=1`, "user_id"},
		{"missing", `{}`, "user_id is required"},
		{"zero", `{"user_id":0}`, "positive"},
		{"negative", `{"user_id":-5}`, "positive"},
		{"a string", `{"user_id":"1"}`, "user_id"},
		{"a fraction", `{"user_id":1.5}`, "user_id"},
		{"too large", `{"user_id":99999999999999999999}`, "user_id"},
		{"unknown field", `{"user_id":1,"admin":true}`, "admin"},
		{"trailing data", `{"user_id":1}{"user_id":2}`, "after the JSON object"},
		{"oversize", `{"user_id":1,"pad":"` + strings.Repeat("x", 2000) + `"}`, "bytes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, _, body := do(t, "POST", base+demo.TokenPath, c.body)
			if code != http.StatusBadRequest || !strings.Contains(body, `"code":"bad_request"`) || !strings.Contains(body, c.reason) {
				t.Errorf("POST %q = %d %s, want 400 bad_request naming %q", c.body, code, body, c.reason)
			}
		})
	}
	if code, _, body := do(t, "POST", base+demo.TokenPath, `{"user_id":13}`); code != http.StatusInternalServerError || !strings.Contains(body, `"code":"internal"`) {
		t.Errorf("a failing issuer: %d %s, want 500 internal", code, body)
	}
	// The server keeps serving after every refusal.
	if code, _, _ := do(t, "POST", base+demo.TokenPath, `{"user_id":1}`); code != http.StatusOK {
		t.Errorf("after the refusals: %d", code)
	}
}

func TestTokenWithoutIssuer(t *testing.T) {
	base := serve(t, nil)
	code, _, body := do(t, "POST", base+demo.TokenPath, `{"user_id":1}`)
	if code != http.StatusNotFound || !strings.Contains(body, "chat token --user N") {
		t.Errorf("POST %s without an issuer = %d %s, want 404 naming chat token", demo.TokenPath, code, body)
	}
	if code, _, _ := do(t, "GET", base+"/", ""); code != http.StatusOK {
		t.Errorf("GET / without an issuer = %d: the page still serves, asking for a token", code)
	}
}
