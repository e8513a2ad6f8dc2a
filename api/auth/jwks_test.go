package auth

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/parleychat/parley/api/auth/authtest"
)

const (
	testIssuer   = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Example"
	testAudience = "parley-mobile"
)

// jwksEnv is a verifier over a local JWKS server, with a clock the test
// moves (the key set's and the verifier's).
type jwksEnv struct {
	issuer *authtest.Issuer
	keys   *KeySet
	v      *Verifier
	now    time.Time
}

func newJWKSEnv(t *testing.T, opts ...Option) *jwksEnv {
	t.Helper()
	e := &jwksEnv{issuer: authtest.NewIssuer(t), now: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
	ks, err := NewKeySet(KeySetConfig{URL: e.issuer.URL, Refresh: time.Hour, MinRefresh: time.Minute, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ks.now = func() time.Time { return e.now }
	v, err := NewJWKSVerifier(ks, append([]Option{WithIssuer(testIssuer), WithAudience(testAudience)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	v.now = ks.now
	e.keys, e.v = ks, v
	return e
}

// claims are an ID token's, as Cognito shapes them.
func (e *jwksEnv) claims(extra jwt.MapClaims) jwt.MapClaims {
	c := jwt.MapClaims{
		"iss": testIssuer, "aud": testAudience, "sub": "7d6c1f0a-93f4-4b4e-9a53-2f1e9c1f0a11",
		"custom:user_id": "42", "token_use": "id", "iat": e.now.Unix(), "exp": e.now.Add(time.Hour).Unix(),
	}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

func TestJWKSVerifier(t *testing.T) {
	e := newJWKSEnv(t, WithUserIDClaim("custom:user_id"))
	rsaKey, ecKey := authtest.NewRSAKey(t, "rsa-1"), authtest.NewECKey(t, "ec-1")
	unpublished := authtest.NewRSAKey(t, "rsa-1") // same kid, other key
	e.issuer.PublishKeys(rsaKey, ecKey)
	exp := e.now.Add(time.Hour)

	mismatched := jwt.NewWithClaims(jwt.SigningMethodRS256, e.claims(nil))
	mismatched.Header["kid"] = ecKey.ID // an RS256 token naming the EC key
	rs256NamingEC := signWith(t, mismatched, rsaKey.Private())

	hsWithPEM := jwt.NewWithClaims(jwt.SigningMethodHS256, e.claims(nil))
	hsWithPEM.Header["kid"] = rsaKey.ID
	confused := signWith(t, hsWithPEM, rsaKey.PublicPEM(t))

	for _, c := range []struct {
		name      string
		token     string
		user      int64
		refusedBy string
	}{
		{"RS256", authtest.Sign(t, rsaKey, e.claims(nil)), 42, ""},
		{"ES256", authtest.Sign(t, ecKey, e.claims(nil)), 42, ""},
		{"numeric user id", authtest.Sign(t, rsaKey, e.claims(jwt.MapClaims{"custom:user_id": 9007199254740993})), 9007199254740993, ""},
		{"audience in a list", authtest.Sign(t, ecKey, e.claims(jwt.MapClaims{"aud": []string{"other", testAudience}})), 42, ""},
		{"unknown kid", authtest.Sign(t, authtest.NewECKey(t, "ec-unknown"), e.claims(nil)), 0, `no key "ec-unknown"`},
		{"no kid", signWith(t, jwt.NewWithClaims(jwt.SigningMethodES256, e.claims(nil)), ecKey.Private()), 0, "kid"},
		{"known kid, other key", authtest.Sign(t, unpublished, e.claims(nil)), 0, "verification error"},
		{"HS256 keyed with the public key", confused, 0, "signing method HS256 is invalid"},
		{"HS256 with a secret", sign(t, jwt.SigningMethodHS256, secret, e.claims(nil)), 0, "signing method HS256 is invalid"},
		{"RS256 naming an ES256 key", rs256NamingEC, 0, `key "ec-1" is for ES256`},
		{"RS512", signWith(t, withKid(jwt.NewWithClaims(jwt.SigningMethodRS512, e.claims(nil)), rsaKey.ID), rsaKey.Private()), 0, "RS512 is invalid"},
		{"wrong issuer", authtest.Sign(t, rsaKey, e.claims(jwt.MapClaims{"iss": "https://evil.example.com"})), 0, "issuer"},
		{"no issuer", authtest.Sign(t, rsaKey, e.claims(jwt.MapClaims{"iss": nil})), 0, "iss"},
		{"wrong audience", authtest.Sign(t, rsaKey, e.claims(jwt.MapClaims{"aud": "another-app"})), 0, "audience"},
		{"no audience", authtest.Sign(t, rsaKey, e.claims(jwt.MapClaims{"aud": nil})), 0, "aud"},
		{"expired", authtest.Sign(t, rsaKey, e.claims(jwt.MapClaims{"exp": e.now.Add(-time.Hour).Unix()})), 0, "expired"},
		{"no expiry", authtest.Sign(t, rsaKey, e.claims(jwt.MapClaims{"exp": nil})), 0, "exp"},
		{"not yet valid", authtest.Sign(t, rsaKey, e.claims(jwt.MapClaims{"nbf": e.now.Add(time.Hour).Unix()})), 0, "not valid yet"},
		{"no user id claim", authtest.Sign(t, rsaKey, e.claims(jwt.MapClaims{"custom:user_id": nil})), 0, "no custom:user_id claim"},
		{"user id not a positive integer", authtest.Sign(t, rsaKey, e.claims(jwt.MapClaims{"custom:user_id": "-4"})), 0, "canonical decimal"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := e.v.Verify(t.Context(), c.token)
			if c.refusedBy != "" {
				if !errors.Is(err, ErrUnauthenticated) || !strings.Contains(err.Error(), c.refusedBy) {
					t.Fatalf("got %+v, %v; want a refusal naming %q", got, err, c.refusedBy)
				}
				return
			}
			if err != nil || got.UserID != c.user || !got.ValidUntil.Equal(exp.Add(DefaultLeeway)) {
				t.Fatalf("got %+v, %v; want user %d until %v", got, err, c.user, exp.Add(DefaultLeeway))
			}
		})
	}

	t.Run("Cognito's UUID sub is not a user id", func(t *testing.T) {
		e := newJWKSEnv(t) // sub, then user_id
		e.issuer.PublishKeys(rsaKey)
		_, err := e.v.Verify(t.Context(), authtest.Sign(t, rsaKey, e.claims(nil)))
		if !errors.Is(err, ErrUnauthenticated) || !strings.Contains(err.Error(), "claim sub") {
			t.Fatalf("got %v, want the UUID sub refused", err)
		}
	})
}

// TestJWKSUnknownKid: a kid the cached set does not hold fetches the set
// again, so a key the issuer just added verifies; random kids cause at
// most one fetch per minimum interval, however many tokens carry them.
func TestJWKSUnknownKid(t *testing.T) {
	e := newJWKSEnv(t)
	k1, k2 := authtest.NewECKey(t, "k1"), authtest.NewECKey(t, "k2")
	e.issuer.PublishKeys(k1)
	claims := e.claims(jwt.MapClaims{"sub": "5"})
	if _, err := e.v.Verify(t.Context(), authtest.Sign(t, k1, claims)); err != nil || e.issuer.Fetches() != 1 {
		t.Fatalf("k1: %v after %d fetches, want accepted after 1", err, e.issuer.Fetches())
	}
	if _, err := e.v.Verify(t.Context(), authtest.Sign(t, k1, claims)); err != nil || e.issuer.Fetches() != 1 {
		t.Fatalf("k1 again: %v after %d fetches, want accepted from the cache", err, e.issuer.Fetches())
	}

	e.now = e.now.Add(time.Minute) // past the minimum interval
	e.issuer.PublishKeys(k1, k2)
	if _, err := e.v.Verify(t.Context(), authtest.Sign(t, k2, claims)); err != nil || e.issuer.Fetches() != 2 {
		t.Fatalf("k2 (just published): %v after %d fetches, want accepted after 2", err, e.issuer.Fetches())
	}

	// Many tokens with kids nobody published, some at once.
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		tok := authtest.Sign(t, authtest.NewECKey(t, "random-"+itoa(int64(i))), claims)
		wg.Go(func() {
			_, err := e.v.Verify(t.Context(), tok)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, ErrUnauthenticated) || !strings.Contains(err.Error(), "holds no key") {
			t.Fatalf("random kid: %v", err)
		}
	}
	if got := e.issuer.Fetches(); got != 2 {
		t.Fatalf("random kids within the minimum interval caused %d fetches, want none beyond the 2 before", got-2)
	}

	e.now = e.now.Add(time.Minute)
	for i := range 10 {
		tok := authtest.Sign(t, authtest.NewECKey(t, "later-"+itoa(int64(i))), claims)
		if _, err := e.v.Verify(t.Context(), tok); !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("random kid: %v", err)
		}
	}
	if got := e.issuer.Fetches(); got != 3 {
		t.Fatalf("after the interval random kids caused %d fetches, want 1", got-2)
	}
}

// TestJWKSWithdrawnKey: a key the issuer no longer publishes (rotated out,
// or compromised) stops verifying once the cached set is refreshed, and
// a token the cache already accepted is then refused.
func TestJWKSWithdrawnKey(t *testing.T) {
	e := newJWKSEnv(t)
	old, current := authtest.NewRSAKey(t, "old"), authtest.NewRSAKey(t, "current")
	e.issuer.PublishKeys(old, current)
	claims := e.claims(jwt.MapClaims{"sub": "5", "exp": e.now.Add(3 * time.Hour).Unix()})
	byOld := authtest.Sign(t, old, claims)
	if _, err := e.v.Verify(t.Context(), byOld); err != nil {
		t.Fatal(err)
	}
	e.issuer.PublishKeys(current)
	e.now = e.now.Add(30 * time.Minute)
	if _, err := e.v.Verify(t.Context(), byOld); err != nil {
		t.Fatalf("within the refresh interval the cached key should verify: %v", err)
	}
	e.now = e.now.Add(31 * time.Minute) // the cached set is now older than the refresh interval
	if _, err := e.v.Verify(t.Context(), byOld); !errors.Is(err, ErrUnauthenticated) || !strings.Contains(err.Error(), `holds no key "old"`) {
		t.Fatalf("a withdrawn key's token: %v, want refused", err)
	}
	if _, err := e.v.Verify(t.Context(), authtest.Sign(t, current, claims)); err != nil {
		t.Fatalf("the remaining key: %v", err)
	}
}

// TestJWKSFetchFailure: an unreachable or broken key set is refused with
// the reason; keys cached before stay in use until the issuer answers.
func TestJWKSFetchFailure(t *testing.T) {
	e := newJWKSEnv(t)
	k := authtest.NewECKey(t, "k")
	tok := authtest.Sign(t, k, e.claims(jwt.MapClaims{"sub": "5", "exp": e.now.Add(5 * time.Hour).Unix()}))

	e.issuer.ServeRaw([]byte(`<html>maintenance</html>`))
	if _, err := e.v.Verify(t.Context(), tok); !errors.Is(err, ErrUnauthenticated) || !strings.Contains(err.Error(), "not a JWKS document") {
		t.Fatalf("broken set: %v", err)
	}
	e.now = e.now.Add(30 * time.Second) // within the minimum interval: no new fetch
	if _, err := e.v.Verify(t.Context(), tok); !errors.Is(err, ErrUnauthenticated) || !strings.Contains(err.Error(), "could not be fetched yet") || e.issuer.Fetches() != 1 {
		t.Fatalf("broken set again: %v after %d fetches", err, e.issuer.Fetches())
	}
	e.now = e.now.Add(time.Minute)
	e.issuer.PublishKeys(k)
	if _, err := e.v.Verify(t.Context(), tok); err != nil {
		t.Fatalf("set repaired: %v", err)
	}
	e.issuer.Publish(map[string]string{"kty": "oct", "kid": "k", "k": "c2VjcmV0"}) // no usable key
	e.now = e.now.Add(2 * time.Hour)
	if _, err := e.v.Verify(t.Context(), tok); err != nil {
		t.Fatalf("a failed refresh should keep the cached key: %v", err)
	}
}

func TestJWKSFetchBounds(t *testing.T) {
	k := authtest.NewECKey(t, "k")
	claims := jwt.MapClaims{"iss": testIssuer, "aud": testAudience, "sub": "5", "exp": time.Now().Add(time.Hour).Unix()}
	tok := authtest.Sign(t, k, claims)
	for name, c := range map[string]struct {
		handler http.HandlerFunc
		want    string
	}{
		"status": {func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "no", http.StatusServiceUnavailable) }, "status 503"},
		"redirect": {func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://elsewhere.example.com/jwks.json", http.StatusFound)
		}, "status 302"},
		"too large": {func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte(`{"keys":[],"pad":"` + strings.Repeat("x", maxJWKSBytes) + `"}`))
		}, "larger than"},
		"slow": {func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }, "deadline exceeded"},
	} {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(c.handler)
			defer srv.Close()
			ks, err := NewKeySet(KeySetConfig{URL: srv.URL, Timeout: 200 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			v, err := NewJWKSVerifier(ks, WithIssuer(testIssuer), WithAudience(testAudience))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := v.Verify(t.Context(), tok); !errors.Is(err, ErrUnauthenticated) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want a refusal naming %q", err, c.want)
			}
		})
	}
}

func TestParseJWKS(t *testing.T) {
	rsaJWK, ecJWK := authtest.NewRSAKey(t, "r").JWK(), authtest.NewECKey(t, "e").JWK()
	with := func(m map[string]string, kv ...string) map[string]string {
		c := map[string]string{}
		for k, v := range m {
			c[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "" {
				delete(c, kv[i])
			} else {
				c[kv[i]] = kv[i+1]
			}
		}
		return c
	}
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	for _, c := range []struct {
		name string
		key  map[string]string
		want string // why it is skipped; "" = used
	}{
		{"RSA", rsaJWK, ""},
		{"EC", ecJWK, ""},
		{"RSA without alg", with(rsaJWK, "alg", ""), ""},
		{"EC without use", with(ecJWK, "use", ""), ""},
		{"RSA key claiming ES256", with(rsaJWK, "alg", "ES256"), "only RS256"},
		{"EC key claiming RS256", with(ecJWK, "alg", "RS256"), "only ES256"},
		{"RSA key for RS512", with(rsaJWK, "alg", "RS512"), "only RS256"},
		{"HS256 key", map[string]string{"kty": "oct", "kid": "o", "alg": "HS256", "k": b64([]byte("a shared secret in a public set"))}, `kty "oct"`},
		{"encryption key", with(rsaJWK, "use", "enc"), "not sig"},
		{"no kid", with(ecJWK, "kid", ""), "no kid"},
		{"1024-bit RSA", with(rsaJWK, "n", b64(small.N.Bytes())), "shorter than 2048"},
		{"even exponent", with(rsaJWK, "e", b64(big.NewInt(65536).Bytes())), "odd"},
		{"bad n", with(rsaJWK, "n", "***"), "base64url"},
		{"P-384", with(ecJWK, "crv", "P-384"), "P-256"},
		{"point off the curve", with(ecJWK, "y", b64(make([]byte, 32))), "not a P-256 point"},
		{"short x", with(ecJWK, "x", b64([]byte{1, 2, 3})), "32 bytes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			doc := jsonKeys(t, c.key, with(ecJWK, "kid", "other"))
			keys, skipped, err := parseJWKS(doc)
			if err != nil {
				t.Fatal(err)
			}
			_, used := keys[c.key["kid"]]
			if c.want == "" {
				if !used || len(skipped) != 0 {
					t.Fatalf("key not used: %v", skipped)
				}
				return
			}
			if used || len(skipped) != 1 || !strings.Contains(skipped[0].Error(), c.want) {
				t.Fatalf("used=%v skipped=%v, want skipped for %q", used, skipped, c.want)
			}
		})
	}
	t.Run("repeated kid", func(t *testing.T) {
		keys, skipped, err := parseJWKS(jsonKeys(t, with(ecJWK, "kid", "same"), with(rsaJWK, "kid", "same"), with(ecJWK, "kid", "other")))
		if err != nil || len(keys) != 1 || len(skipped) != 1 || !strings.Contains(skipped[0].Error(), "more than once") {
			t.Fatalf("keys=%v skipped=%v err=%v, want only the other key", keys, skipped, err)
		}
	})
	for name, doc := range map[string]string{"empty set": `{"keys":[]}`, "not JSON": `nope`, "keys not a list": `{"keys":{}}`} {
		t.Run(name, func(t *testing.T) {
			if _, _, err := parseJWKS([]byte(doc)); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestCheckJWKSURL(t *testing.T) {
	for u, ok := range map[string]bool{
		"https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_X/.well-known/jwks.json": true,
		"http://127.0.0.1:9000/jwks.json":                                               true,
		"http://localhost:9000/jwks.json":                                               true,
		"http://[::1]:9000/jwks.json":                                                   true,
		"http://issuer.example.com/jwks.json":                                           false,
		"ftp://issuer.example.com/jwks.json":                                            false,
		"https://user:pw@issuer.example.com/jwks.json":                                  false,
		"issuer.example.com/jwks.json":                                                  false,
		"https:///jwks.json":                                                            false,
		"https://issuer.example.com/jwks.json#fragment":                                 false,
	} {
		if err := CheckJWKSURL(u); (err == nil) != ok {
			t.Errorf("CheckJWKSURL(%q) = %v, want ok=%v", u, err, ok)
		}
	}
	if _, err := NewKeySet(KeySetConfig{URL: "https://x.example.com/j", Refresh: time.Minute, MinRefresh: time.Hour}); err == nil {
		t.Error("a minimum refresh interval longer than the refresh interval was accepted")
	}
}

func TestJWKSVerifierNeedsIssuerAndAudience(t *testing.T) {
	ks, err := NewKeySet(KeySetConfig{URL: "https://x.example.com/j"})
	if err != nil {
		t.Fatal(err)
	}
	for _, opts := range [][]Option{nil, {WithIssuer("i")}, {WithAudience("a")}} {
		if _, err := NewJWKSVerifier(ks, opts...); err == nil {
			t.Errorf("verifier without issuer or audience accepted (%d options)", len(opts))
		}
	}
}

func jsonKeys(t *testing.T, keys ...map[string]string) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func withKid(t *jwt.Token, kid string) *jwt.Token {
	t.Header["kid"] = kid
	return t
}

func signWith(t *testing.T, tok *jwt.Token, key any) string {
	t.Helper()
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
