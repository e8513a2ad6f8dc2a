// Package pushtest runs local servers that speak the push providers'
// protocols (Expo's push API, APNs over HTTP/2 with TLS, FCM HTTP v1 with
// its OAuth2 token endpoint), so tests run the real clients against them.
// They check what the real services check that matters here (HTTP/2,
// signed provider tokens, OAuth2 assertions) and answer the errors the
// clients must handle; they deliver nothing.
package pushtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// behaviour is what a server answers for some tokens, and how many of the
// next requests it throttles or fails.
type behaviour struct {
	mu       sync.Mutex
	invalid  map[string]bool
	throttle int
	fail     int
}

// Invalidate makes the server call token invalid from now on.
func (b *behaviour) Invalidate(token string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.invalid == nil {
		b.invalid = map[string]bool{}
	}
	b.invalid[token] = true
}

// Throttle answers the next n requests 429.
func (b *behaviour) Throttle(n int) { b.mu.Lock(); b.throttle = n; b.mu.Unlock() }

// Fail answers the next n requests 503.
func (b *behaviour) Fail(n int) { b.mu.Lock(); b.fail = n; b.mu.Unlock() }

// next reports whether this request is throttled or failed.
func (b *behaviour) next() (throttled, failed bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.throttle > 0:
		b.throttle--
		return true, false
	case b.fail > 0:
		b.fail--
		return false, true
	}
	return false, false
}

func (b *behaviour) isInvalid(token string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.invalid[token]
}

// ExpoMessage is a message as the Expo server received it.
type ExpoMessage struct {
	To               string            `json:"to"`
	Title            string            `json:"title"`
	Body             string            `json:"body"`
	Data             map[string]string `json:"data"`
	Badge            *int              `json:"badge"`
	Sound            string            `json:"sound"`
	Priority         string            `json:"priority"`
	ContentAvailable bool              `json:"_contentAvailable"`
}

// ExpoMaxMessageBytes is Expo's limit on one message's JSON.
const ExpoMaxMessageBytes = 4096

// Expo serves Expo's push/send and push/getReceipts. Invalidated tokens get
// a DeviceNotRegistered ticket; tokens passed to UnregisterLater get an ok
// ticket and a DeviceNotRegistered receipt.
type Expo struct {
	behaviour
	srv *httptest.Server

	mu       sync.Mutex
	messages []ExpoMessage
	tickets  map[string]string // ticket id → token
	later    map[string]bool
	requests int
}

// NewExpo starts an Expo server, closed at the test's end.
func NewExpo(t testing.TB) *Expo {
	e := &Expo{tickets: map[string]string{}, later: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /--/api/v2/push/send", e.send)
	mux.HandleFunc("POST /--/api/v2/push/getReceipts", e.receipts)
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	return e
}

// URL is the send endpoint's full URL.
func (e *Expo) URL() string { return e.srv.URL + "/--/api/v2/push/send" }

// UnregisterLater makes token's next tickets ok and their receipts
// DeviceNotRegistered.
func (e *Expo) UnregisterLater(token string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.later[token] = true
}

// Messages returns the messages accepted so far.
func (e *Expo) Messages() []ExpoMessage {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]ExpoMessage(nil), e.messages...)
}

// Requests counts send requests, refused ones included.
func (e *Expo) Requests() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.requests
}

func expoError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"code": code, "message": msg}}})
}

func (e *Expo) send(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	e.requests++
	e.mu.Unlock()
	if throttled, failed := e.next(); throttled {
		w.Header().Set("Retry-After", "0")
		expoError(w, http.StatusTooManyRequests, "TOO_MANY_REQUESTS", "rate limit exceeded")
		return
	} else if failed {
		expoError(w, http.StatusServiceUnavailable, "INTERNAL_SERVER_ERROR", "try again")
		return
	}
	var msgs []ExpoMessage
	if err := json.NewDecoder(r.Body).Decode(&msgs); err != nil {
		expoError(w, http.StatusBadRequest, "VALIDATION_ERROR", err.Error())
		return
	}
	if len(msgs) > 100 {
		expoError(w, http.StatusBadRequest, "PUSH_TOO_MANY_NOTIFICATIONS", "at most 100 messages per request")
		return
	}
	for _, m := range msgs {
		// Expo refuses the whole request when one message is over its
		// payload limit.
		if b, _ := json.Marshal(m); len(b) > ExpoMaxMessageBytes {
			expoError(w, http.StatusBadRequest, "VALIDATION_ERROR", fmt.Sprintf("a message is over %d bytes", ExpoMaxMessageBytes))
			return
		}
	}
	var tickets []map[string]any
	e.mu.Lock()
	for _, m := range msgs {
		if !strings.HasPrefix(m.To, "ExponentPushToken[") && !strings.HasPrefix(m.To, "ExpoPushToken[") {
			tickets = append(tickets, map[string]any{"status": "error", "message": fmt.Sprintf("%q is not a valid Expo push token", m.To),
				"details": map[string]string{"error": "DeviceNotRegistered"}})
			continue
		}
		if e.isInvalid(m.To) {
			tickets = append(tickets, map[string]any{"status": "error", "message": fmt.Sprintf("%q is not a registered push notification recipient", m.To),
				"details": map[string]string{"error": "DeviceNotRegistered"}})
			continue
		}
		id := rand.Text()
		e.tickets[id] = m.To
		e.messages = append(e.messages, m)
		tickets = append(tickets, map[string]any{"status": "ok", "id": id})
	}
	e.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"data": tickets})
}

func (e *Expo) receipts(w http.ResponseWriter, r *http.Request) {
	var in struct {
		IDs []string `json:"ids"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		expoError(w, http.StatusBadRequest, "VALIDATION_ERROR", err.Error())
		return
	}
	out := map[string]any{}
	e.mu.Lock()
	for _, id := range in.IDs {
		token, ok := e.tickets[id]
		switch {
		case !ok:
		case e.later[token]:
			out[id] = map[string]any{"status": "error", "message": "the device is not registered",
				"details": map[string]string{"error": "DeviceNotRegistered"}}
		default:
			out[id] = map[string]any{"status": "ok"}
		}
	}
	e.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"data": out})
}

// APNsRequest is a notification as the APNs server received it.
type APNsRequest struct {
	Token, Topic, PushType, Priority, CollapseID string
	Payload                                      map[string]any
}

// APNs serves Apple's HTTP/2 push API over TLS: it refuses HTTP/1, checks
// the ES256 provider token against the key it made (Key), and answers 410
// Unregistered for invalidated tokens.
type APNs struct {
	behaviour
	srv            *httptest.Server
	key            *ecdsa.PrivateKey
	KeyID, TeamID  string
	mu             sync.Mutex
	requests       []APNsRequest
	providerTokens map[string]bool
}

// NewAPNs starts an APNs server with a fresh signing key.
func NewAPNs(t testing.TB) *APNs {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	a := &APNs{key: key, KeyID: "ABC123DEFG", TeamID: "TEAM123456", providerTokens: map[string]bool{}}
	a.srv = httptest.NewUnstartedServer(http.HandlerFunc(a.serve))
	a.srv.EnableHTTP2 = true
	a.srv.StartTLS()
	t.Cleanup(a.srv.Close)
	return a
}

// URL is the server's base URL.
func (a *APNs) URL() string { return a.srv.URL }

// Client trusts the server's certificate and speaks HTTP/2 to it.
func (a *APNs) Client() *http.Client { return a.srv.Client() }

// KeyPEM is the signing key as a .p8 file holds it.
func (a *APNs) KeyPEM(t testing.TB) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(a.key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// Requests returns the notifications accepted so far.
func (a *APNs) Requests() []APNsRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]APNsRequest(nil), a.requests...)
}

// ProviderTokens counts the distinct provider tokens seen.
func (a *APNs) ProviderTokens() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.providerTokens)
}

func apnsReason(w http.ResponseWriter, status int, reason string) {
	w.Header().Set("apns-id", rand.Text())
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"reason": reason})
}

func (a *APNs) serve(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor != 2 {
		http.Error(w, "APNs speaks HTTP/2 only", http.StatusHTTPVersionNotSupported)
		return
	}
	token, ok := strings.CutPrefix(r.URL.Path, "/3/device/")
	if r.Method != http.MethodPost || !ok {
		apnsReason(w, http.StatusNotFound, "BadPath")
		return
	}
	bearer, _ := strings.CutPrefix(r.Header.Get("authorization"), "bearer ")
	parsed, err := jwt.Parse(bearer, func(tk *jwt.Token) (any, error) {
		if tk.Header["kid"] != a.KeyID {
			return nil, fmt.Errorf("kid %v", tk.Header["kid"])
		}
		return &a.key.PublicKey, nil
	}, jwt.WithValidMethods([]string{"ES256"}), jwt.WithIssuedAt())
	if err != nil || !parsed.Valid {
		apnsReason(w, http.StatusForbidden, "InvalidProviderToken")
		return
	}
	if iss, _ := parsed.Claims.GetIssuer(); iss != a.TeamID {
		apnsReason(w, http.StatusForbidden, "InvalidProviderToken")
		return
	}
	if r.Header.Get("apns-topic") == "" {
		apnsReason(w, http.StatusBadRequest, "MissingTopic")
		return
	}
	if throttled, failed := a.next(); throttled {
		apnsReason(w, http.StatusTooManyRequests, "TooManyRequests")
		return
	} else if failed {
		apnsReason(w, http.StatusServiceUnavailable, "ServiceUnavailable")
		return
	}
	if a.isInvalid(token) {
		apnsReason(w, http.StatusGone, "Unregistered")
		return
	}
	if len(token) != 64 {
		apnsReason(w, http.StatusBadRequest, "BadDeviceToken")
		return
	}
	var payload map[string]any
	if err := json.NewDecoder(r.Body).Decode(&payload); err != nil {
		apnsReason(w, http.StatusBadRequest, "PayloadEmpty")
		return
	}
	a.mu.Lock()
	a.providerTokens[bearer] = true
	a.requests = append(a.requests, APNsRequest{Token: token, Topic: r.Header.Get("apns-topic"), PushType: r.Header.Get("apns-push-type"),
		Priority: r.Header.Get("apns-priority"), CollapseID: r.Header.Get("apns-collapse-id"), Payload: payload})
	a.mu.Unlock()
	w.Header().Set("apns-id", rand.Text())
	w.WriteHeader(http.StatusOK)
}

// FCM serves FCM HTTP v1's messages:send and a service account's OAuth2
// token endpoint, which checks the RS256 assertion.
type FCM struct {
	behaviour
	srv      *httptest.Server
	key      *rsa.PrivateKey
	Project  string
	mu       sync.Mutex
	messages []map[string]any
	issued   map[string]bool
	grants   int
}

// NewFCM starts an FCM server and its token endpoint.
func NewFCM(t testing.TB) *FCM {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	f := &FCM{key: key, Project: "parley-test", issued: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", f.token)
	mux.HandleFunc("POST /v1/projects/{project}/{rest}", f.send)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

// URL is the API's base URL.
func (f *FCM) URL() string { return f.srv.URL }

// Credentials is a service account key file whose token_uri is this
// server's.
func (f *FCM) Credentials(t testing.TB) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(f.key)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(map[string]string{
		"type": "service_account", "project_id": f.Project, "private_key_id": "key-1",
		"private_key":  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email": "notifier@parley-test.iam.gserviceaccount.com", "token_uri": f.srv.URL + "/token",
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Messages returns the messages accepted so far.
func (f *FCM) Messages() []map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]map[string]any(nil), f.messages...)
}

// Grants counts the access tokens issued.
func (f *FCM) Grants() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.grants
}

func (f *FCM) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		http.Error(w, `{"error":"unsupported_grant_type"}`, http.StatusBadRequest)
		return
	}
	parsed, err := jwt.Parse(r.PostForm.Get("assertion"), func(*jwt.Token) (any, error) { return &f.key.PublicKey, nil },
		jwt.WithValidMethods([]string{"RS256"}), jwt.WithAudience(f.srv.URL+"/token"), jwt.WithExpirationRequired())
	if err != nil || !parsed.Valid {
		http.Error(w, `{"error":"invalid_grant"}`, http.StatusBadRequest)
		return
	}
	if claims, _ := parsed.Claims.(jwt.MapClaims); claims["scope"] != "https://www.googleapis.com/auth/firebase.messaging" {
		http.Error(w, `{"error":"invalid_scope"}`, http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.grants++
	tok := rand.Text()
	f.issued[tok] = true
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "expires_in": 3599, "token_type": "Bearer"})
}

func fcmError(w http.ResponseWriter, status int, state, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	body := map[string]any{"code": status, "message": state, "status": state}
	if code != "" {
		body["details"] = []map[string]string{{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}}
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"error": body})
}

func (f *FCM) send(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("project") != f.Project || r.PathValue("rest") != "messages:send" {
		fcmError(w, http.StatusNotFound, "NOT_FOUND", "")
		return
	}
	bearer, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	f.mu.Lock()
	ok := f.issued[bearer]
	f.mu.Unlock()
	if !ok {
		fcmError(w, http.StatusUnauthorized, "UNAUTHENTICATED", "")
		return
	}
	if throttled, failed := f.next(); throttled {
		fcmError(w, http.StatusTooManyRequests, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED")
		return
	} else if failed {
		fcmError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "UNAVAILABLE")
		return
	}
	var in struct {
		Message map[string]any `json:"message"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.Message == nil {
		fcmError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "INVALID_ARGUMENT")
		return
	}
	token, _ := in.Message["token"].(string)
	if f.isInvalid(token) {
		fcmError(w, http.StatusNotFound, "NOT_FOUND", "UNREGISTERED")
		return
	}
	f.mu.Lock()
	f.messages = append(f.messages, in.Message)
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"name": "projects/" + f.Project + "/messages/" + rand.Text()})
}
