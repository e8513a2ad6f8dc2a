package push_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/internal/push"
	"github.com/parleychat/parley/internal/push/pushtest"
	"github.com/parleychat/parley/internal/retry"
)

// waits records the providers' retry waits instead of sleeping.
type waits struct {
	mu sync.Mutex
	d  []time.Duration
}

func (w *waits) policy() retry.Policy {
	p := push.DefaultRetry()
	p.Sleep = func(_ context.Context, d time.Duration) error {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.d = append(w.d, d)
		return nil
	}
	return p
}

func (w *waits) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.d)
}

const apnsToken = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"

func note(platform, token string) push.Notification {
	return push.Notification{Platform: platform, Token: token, Title: "New message", Body: "hi", Badge: 3,
		CollapseID: "0190b6f4-8a3e-7c2d-9f10-1234567890ab", Data: map[string]string{"message_id": "m1", "seq": "7"}}
}

func TestExpoBatchesTicketsAndInvalidTokens(t *testing.T) {
	srv := pushtest.NewExpo(t)
	expo, err := push.NewExpo(srv.URL(), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	srv.Invalidate("ExponentPushToken[gone]")
	var ns []push.Notification
	for i := range 150 {
		ns = append(ns, note(push.PlatformExpo, "ExponentPushToken[t"+strings.Repeat("x", i%5)+string(rune('a'+i%26))+"]"))
	}
	ns[149].Token = "ExponentPushToken[gone]"
	res := expo.Send(context.Background(), ns)
	if srv.Requests() != 2 {
		t.Errorf("%d requests for 150 messages, want 2 (batches of 100)", srv.Requests())
	}
	for i, r := range res[:149] {
		if r.Err != nil || r.Ticket == "" {
			t.Fatalf("message %d: ticket %q, err %v", i, r.Ticket, r.Err)
		}
	}
	if !errors.Is(res[149].Err, push.ErrInvalidToken) {
		t.Errorf("unregistered token: %v, want ErrInvalidToken", res[149].Err)
	}
	m := srv.Messages()[0]
	if m.Title != "New message" || m.Body != "hi" || m.Badge == nil || *m.Badge != 3 || m.Data["seq"] != "7" || m.Sound != "default" {
		t.Errorf("message %+v", m)
	}
}

func TestExpoRetriesThrottlingThenGivesUpRetryably(t *testing.T) {
	srv := pushtest.NewExpo(t)
	expo, _ := push.NewExpo(srv.URL(), "", nil)
	w := &waits{}
	expo.SetRetry(w.policy())
	srv.Throttle(1)
	if res := expo.Send(context.Background(), []push.Notification{note(push.PlatformExpo, "ExponentPushToken[a]")}); res[0].Err != nil {
		t.Fatalf("after one 429: %v", res[0].Err)
	}
	if w.count() != 1 || len(srv.Messages()) != 1 {
		t.Errorf("%d waits, %d messages; want one retry and one message", w.count(), len(srv.Messages()))
	}
	srv.Fail(10)
	res := expo.Send(context.Background(), []push.Notification{note(push.PlatformExpo, "ExponentPushToken[a]")})
	if !push.IsRetryable(res[0].Err) {
		t.Errorf("after 5xx answers: %v, want a retryable error", res[0].Err)
	}
	if srv.Requests() != 2+3 {
		t.Errorf("%d requests, want 2 then 3 attempts", srv.Requests())
	}
}

func TestExpoReceipts(t *testing.T) {
	srv := pushtest.NewExpo(t)
	expo, _ := push.NewExpo(srv.URL(), "", nil)
	srv.UnregisterLater("ExponentPushToken[later]")
	res := expo.Send(context.Background(), []push.Notification{note(push.PlatformExpo, "ExponentPushToken[ok]"), note(push.PlatformExpo, "ExponentPushToken[later]")})
	got, err := expo.Receipts(context.Background(), []string{res[0].Ticket, res[1].Ticket, "unknown"})
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := got[res[0].Ticket]; !ok || e != nil {
		t.Errorf("ok ticket: %v %v", ok, e)
	}
	if !errors.Is(got[res[1].Ticket], push.ErrInvalidToken) {
		t.Errorf("receipt of unregistered device: %v", got[res[1].Ticket])
	}
	if _, ok := got["unknown"]; ok {
		t.Error("a ticket without receipt got one")
	}
}

func TestEndpointsMustBeHTTPSOrLoopback(t *testing.T) {
	for url, ok := range map[string]bool{
		"https://exp.host/--/api/v2/push/send":     true,
		"http://127.0.0.1:9/--/api/v2/push/send":   true,
		"http://localhost:9/--/api/v2/push/send":   true,
		"http://[::1]:9/--/api/v2/push/send":       true,
		"http://10.0.0.2:9/--/api/v2/push/send":    false,
		"http://exp.host/--/api/v2/push/send":      false,
		"ftp://127.0.0.1/--/api/v2/push/send":      false,
		"https://exp.host/--/api/v2/push/receipts": false, // not the send endpoint
	} {
		if _, err := push.NewExpo(url, "", nil); (err == nil) != ok {
			t.Errorf("%s: err %v, want ok=%v", url, err, ok)
		}
	}
}

func newAPNs(t *testing.T, srv *pushtest.APNs) *push.APNs {
	t.Helper()
	a, err := push.NewAPNs(push.APNsConfig{URL: srv.URL(), KeyPEM: srv.KeyPEM(t), KeyID: srv.KeyID, TeamID: srv.TeamID, Topic: "chat.parley.app"}, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestAPNsOverHTTP2WithProviderToken(t *testing.T) {
	srv := pushtest.NewAPNs(t)
	a := newAPNs(t, srv)
	silent := note(push.PlatformIOS, apnsToken)
	silent.Silent, silent.Title, silent.Body = true, "", ""
	res := a.Send(context.Background(), []push.Notification{note(push.PlatformIOS, apnsToken), silent})
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("notification %d: %v", i, r.Err)
		}
	}
	reqs := srv.Requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want 2", len(reqs))
	}
	var alert, background pushtest.APNsRequest
	for _, r := range reqs {
		if r.PushType == "alert" {
			alert = r
		} else {
			background = r
		}
	}
	aps, _ := alert.Payload["aps"].(map[string]any)
	if alert.Topic != "chat.parley.app" || alert.Priority != "10" || alert.CollapseID != "0190b6f4-8a3e-7c2d-9f10-1234567890ab" ||
		aps["badge"] != float64(3) || alert.Payload["seq"] != "7" {
		t.Errorf("alert request %+v", alert)
	}
	if alert := aps["alert"].(map[string]any); alert["title"] != "New message" || alert["body"] != "hi" {
		t.Errorf("alert %v", alert)
	}
	baps, _ := background.Payload["aps"].(map[string]any)
	if background.PushType != "background" || background.Priority != "5" || background.CollapseID != "" ||
		baps["content-available"] != float64(1) || baps["badge"] != float64(3) || baps["alert"] != nil {
		t.Errorf("background request %+v", background)
	}
	if n := srv.ProviderTokens(); n != 1 {
		t.Errorf("%d provider tokens for two pushes, want one reused", n)
	}
}

func TestAPNsErrors(t *testing.T) {
	srv := pushtest.NewAPNs(t)
	a := newAPNs(t, srv)
	w := &waits{}
	a.SetRetry(w.policy())
	gone := strings.Repeat("ab", 32)
	srv.Invalidate(gone)
	res := a.Send(context.Background(), []push.Notification{note(push.PlatformIOS, gone), note(push.PlatformIOS, "abcd")})
	for i, r := range res {
		if !errors.Is(r.Err, push.ErrInvalidToken) {
			t.Errorf("notification %d (410 / BadDeviceToken): %v, want ErrInvalidToken", i, r.Err)
		}
	}
	if w.count() != 0 {
		t.Errorf("an invalid token was retried %d times", w.count())
	}
	srv.Throttle(1)
	if res := a.Send(context.Background(), []push.Notification{note(push.PlatformIOS, apnsToken)}); res[0].Err != nil || w.count() != 1 {
		t.Errorf("after a 429: %v with %d waits, want success after one", res[0].Err, w.count())
	}
	srv.Fail(5)
	if res := a.Send(context.Background(), []push.Notification{note(push.PlatformIOS, apnsToken)}); !push.IsRetryable(res[0].Err) {
		t.Errorf("after 503s: %v, want retryable", res[0].Err)
	}

	// A key the server does not know: the token is refused, a new one is
	// signed and refused again, and the send ends retryable.
	other := pushtest.NewAPNs(t)
	wrong, err := push.NewAPNs(push.APNsConfig{URL: srv.URL(), KeyPEM: other.KeyPEM(t), KeyID: srv.KeyID, TeamID: srv.TeamID, Topic: "chat.parley.app"}, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	wrong.SetRetry(w.policy())
	if res := wrong.Send(context.Background(), []push.Notification{note(push.PlatformIOS, apnsToken)}); !push.IsRetryable(res[0].Err) || !strings.Contains(res[0].Err.Error(), "InvalidProviderToken") {
		t.Errorf("wrong key: %v", res[0].Err)
	}
}

func TestAPNsRefusesBadConfig(t *testing.T) {
	srv := pushtest.NewAPNs(t)
	if _, err := push.NewAPNs(push.APNsConfig{URL: srv.URL(), KeyPEM: []byte("not a key"), KeyID: "k", TeamID: "t", Topic: "x"}, nil); err == nil {
		t.Error("a bad key was accepted")
	}
	if _, err := push.NewAPNs(push.APNsConfig{URL: srv.URL(), KeyPEM: srv.KeyPEM(t)}, nil); err == nil {
		t.Error("a config without key id, team id and topic was accepted")
	}
}

func TestFCMWithServiceAccount(t *testing.T) {
	srv := pushtest.NewFCM(t)
	f, err := push.NewFCM(srv.URL(), srv.Credentials(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	w := &waits{}
	f.SetRetry(w.policy())
	srv.Invalidate("gone-token")
	silent := note(push.PlatformAndroid, "tok:B")
	silent.Silent, silent.Title, silent.Body = true, "", ""
	res := f.Send(context.Background(), []push.Notification{note(push.PlatformAndroid, "tok:A"), silent, note(push.PlatformAndroid, "gone-token")})
	if res[0].Err != nil || res[1].Err != nil {
		t.Fatalf("sends: %v, %v", res[0].Err, res[1].Err)
	}
	if !errors.Is(res[2].Err, push.ErrInvalidToken) {
		t.Errorf("UNREGISTERED: %v, want ErrInvalidToken", res[2].Err)
	}
	if g := srv.Grants(); g != 1 {
		t.Errorf("%d access tokens, want one reused", g)
	}
	var alert, background map[string]any
	for _, m := range srv.Messages() {
		if m["token"] == "tok:A" {
			alert = m
		} else {
			background = m
		}
	}
	android := alert["android"].(map[string]any)
	an := android["notification"].(map[string]any)
	if android["collapse_key"] != note("", "").CollapseID || an["tag"] != note("", "").CollapseID || an["notification_count"] != float64(3) {
		t.Errorf("android part %v", android)
	}
	if n := alert["notification"].(map[string]any); n["title"] != "New message" || n["body"] != "hi" {
		t.Errorf("notification %v", n)
	}
	if d := alert["data"].(map[string]any); d["seq"] != "7" || d["badge"] != "3" {
		t.Errorf("data %v", d)
	}
	if background["notification"] != nil || background["data"].(map[string]any)["badge"] != "3" {
		t.Errorf("silent message %v", background)
	}
	srv.Fail(1)
	if res := f.Send(context.Background(), []push.Notification{note(push.PlatformAndroid, "tok:A")}); res[0].Err != nil || w.count() != 1 {
		t.Errorf("after a 503: %v with %d waits", res[0].Err, w.count())
	}
	srv.Throttle(5)
	if res := f.Send(context.Background(), []push.Notification{note(push.PlatformAndroid, "tok:A")}); !push.IsRetryable(res[0].Err) {
		t.Errorf("throttled throughout: %v, want retryable", res[0].Err)
	}
}

func TestFCMRefusesBadCredentials(t *testing.T) {
	for name, creds := range map[string]string{
		"not JSON":       "{",
		"not an account": `{"type":"authorized_user"}`,
		"bad key":        `{"type":"service_account","project_id":"p","client_email":"e","private_key":"x","token_uri":"https://oauth2.googleapis.com/token"}`,
		"plain http uri": `{"type":"service_account","project_id":"p","client_email":"e","private_key":"x","token_uri":"http://10.1.1.1/token"}`,
	} {
		if _, err := push.NewFCM(push.FCMURL, []byte(creds), nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestRouterAndSink(t *testing.T) {
	sink := push.NewSink(nil)
	r := push.Router{push.PlatformExpo: sink}
	res := r.Send(context.Background(), []push.Notification{note(push.PlatformIOS, apnsToken), note(push.PlatformExpo, "ExponentPushToken[a]")})
	if res[0].Err == nil || !strings.Contains(res[0].Err.Error(), "no push provider") || res[1].Err != nil {
		t.Errorf("results %+v", res)
	}
	if got := sink.Recent(); len(got) != 1 || got[0].Token != "ExponentPushToken[a]" || got[0].Badge != 3 {
		t.Errorf("sink recorded %+v", got)
	}
}

// TestExpoRefusedBatchFallsBackToEachNotification: one message Expo refuses
// the whole request for does not fail its neighbours.
func TestExpoRefusedBatchFallsBackToEachNotification(t *testing.T) {
	srv := pushtest.NewExpo(t)
	expo, _ := push.NewExpo(srv.URL(), "", nil)
	ns := []push.Notification{note(push.PlatformExpo, "ExponentPushToken[a]"), note(push.PlatformExpo, "ExponentPushToken[b]"), note(push.PlatformExpo, "ExponentPushToken[c]")}
	ns[1].Body = strings.Repeat("x", pushtest.ExpoMaxMessageBytes)
	res := expo.Send(context.Background(), ns)
	if len(res) != 3 {
		t.Fatalf("%d results for 3 notifications", len(res))
	}
	for _, i := range []int{0, 2} {
		if res[i].Err != nil || res[i].Ticket == "" {
			t.Errorf("notification %d beside an oversized one: ticket %q, err %v; want sent", i, res[i].Ticket, res[i].Err)
		}
	}
	if res[1].Err == nil || push.IsRetryable(res[1].Err) || !strings.Contains(res[1].Err.Error(), "VALIDATION_ERROR") {
		t.Errorf("oversized notification: %v, want its own permanent refusal with Expo's reason", res[1].Err)
	}
	if got := len(srv.Messages()); got != 2 {
		t.Errorf("Expo accepted %d messages, want 2", got)
	}
	if got := srv.Requests(); got != 4 {
		t.Errorf("%d requests, want 4: the batch, then each notification alone", got)
	}
}
