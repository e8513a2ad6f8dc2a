package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Key set defaults (see KeySetConfig).
const (
	DefaultJWKSRefresh    = time.Hour
	DefaultJWKSMinRefresh = time.Minute
	DefaultJWKSTimeout    = 5 * time.Second
)

// maxJWKSBytes bounds a key set document: real ones are a few KiB.
const maxJWKSBytes = 256 << 10

// minRSABits is the smallest RSA modulus accepted (NIST's floor since 2013).
const minRSABits = 2048

// KeySetConfig says where a key set is and how often it is fetched.
type KeySetConfig struct {
	// URL of the JWKS document: https://, or http:// on a loopback host.
	URL string
	// Refresh: cached keys older than this are fetched again before use
	// (so a key the issuer withdrew stops verifying). Default DefaultJWKSRefresh.
	Refresh time.Duration
	// MinRefresh: the least time between two fetches, however many tokens
	// name a kid the set does not hold (they cannot make us hammer the
	// issuer). Default DefaultJWKSMinRefresh.
	MinRefresh time.Duration
	// Timeout of one fetch. Default DefaultJWKSTimeout.
	Timeout time.Duration
	// Client fetches the document; default one with no redirects.
	Client *http.Client
	Logger *slog.Logger
}

// KeySet is a cached JSON Web Key Set (RFC 7517) of RS256 and ES256
// verification keys. Each key verifies only the one algorithm it is for,
// so a token cannot choose how its signature is checked.
type KeySet struct {
	cfg    KeySetConfig
	now    func() time.Time
	logger *slog.Logger

	fetchMu sync.Mutex // one fetch at a time; waiters use its result

	mu      sync.RWMutex
	keys    map[string]jwk
	fetched time.Time // last successful fetch
	tried   time.Time // last attempt, successful or not
}

// jwk is one usable key: its algorithm and public key.
type jwk struct {
	alg string
	key any // *rsa.PublicKey or *ecdsa.PublicKey
}

// CheckJWKSURL accepts https:// URLs, and http:// only on a loopback host
// (a local identity provider in development or tests).
func CheckJWKSURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil || u.Fragment != "" {
		return fmt.Errorf("%q is not a URL like https://issuer.example.com/.well-known/jwks.json", raw)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if h := u.Hostname(); h == "localhost" || net.ParseIP(h).IsLoopback() {
			return nil
		}
		return fmt.Errorf("%q: keys fetched over plain http could be replaced on the way: use https (http is accepted only on a loopback host)", raw)
	}
	return fmt.Errorf("%q: want an https:// URL", raw)
}

// NewKeySet validates cfg; keys are fetched on first use (or by Refresh).
func NewKeySet(cfg KeySetConfig) (*KeySet, error) {
	if err := CheckJWKSURL(cfg.URL); err != nil {
		return nil, err
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = DefaultJWKSRefresh
	}
	if cfg.MinRefresh <= 0 {
		cfg.MinRefresh = DefaultJWKSMinRefresh
	}
	if cfg.MinRefresh > cfg.Refresh {
		return nil, fmt.Errorf("the minimum refresh interval %s is longer than the refresh interval %s", cfg.MinRefresh, cfg.Refresh)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultJWKSTimeout
	}
	if cfg.Client == nil {
		// A redirect could lead to plain http: the URL given is the one used.
		cfg.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &KeySet{cfg: cfg, now: time.Now, logger: logger}, nil
}

// Refresh fetches the key set now, unless it was tried within the minimum
// refresh interval. The cached keys are kept if the fetch fails.
func (s *KeySet) Refresh(ctx context.Context) error {
	s.fetchMu.Lock()
	defer s.fetchMu.Unlock()
	return s.refreshLocked(ctx)
}

// refreshLocked fetches unless an attempt was made within the minimum
// interval (also when another caller fetched while this one waited for
// fetchMu, which it holds).
func (s *KeySet) refreshLocked(ctx context.Context) error {
	s.mu.RLock()
	tried := s.tried
	s.mu.RUnlock()
	now := s.now()
	if !tried.IsZero() && now.Sub(tried) < s.cfg.MinRefresh {
		return nil
	}
	// The fetch serves every waiting caller: one leaving must not cancel it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.Timeout)
	defer cancel()
	keys, err := s.fetch(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tried = now
	if err != nil {
		s.logger.WarnContext(ctx, "JWKS fetch failed; keeping the keys cached before", "url", s.cfg.URL, "keys", len(s.keys), "err", err)
		return fmt.Errorf("fetch JWKS: %w", err)
	}
	s.keys, s.fetched = keys, now
	return nil
}

func (s *KeySet) fetch(ctx context.Context) (map[string]jwk, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.cfg.URL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: status %s", s.cfg.URL, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", s.cfg.URL, err)
	}
	if len(body) > maxJWKSBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes", s.cfg.URL, maxJWKSBytes)
	}
	keys, skipped, err := parseJWKS(body)
	for _, e := range skipped {
		s.logger.WarnContext(ctx, "JWKS key ignored", "url", s.cfg.URL, "reason", e)
	}
	return keys, err
}

// key returns the key named kid, fetching the set when it does not hold
// kid (at most once per minimum interval) or is older than the refresh
// interval. A failed fetch of an old set keeps its keys in use.
func (s *KeySet) key(ctx context.Context, kid string) (jwk, error) {
	s.mu.RLock()
	k, ok := s.keys[kid]
	fresh := !s.fetched.IsZero() && s.now().Sub(s.fetched) < s.cfg.Refresh
	s.mu.RUnlock()
	if ok && fresh {
		return k, nil
	}
	s.fetchMu.Lock()
	err := s.refreshLocked(ctx)
	s.fetchMu.Unlock()
	s.mu.RLock()
	k, ok = s.keys[kid]
	s.mu.RUnlock()
	if ok {
		return k, nil
	}
	if err != nil {
		return jwk{}, fmt.Errorf("no key %q: %w", kid, err)
	}
	s.mu.RLock()
	fetched := s.fetched
	s.mu.RUnlock()
	if fetched.IsZero() {
		return jwk{}, fmt.Errorf("no key %q: the key set could not be fetched yet", kid)
	}
	return jwk{}, fmt.Errorf("the key set holds no key %q", kid)
}

// rawJWK holds the members of RFC 7517/7518 keys that are read.
type rawJWK struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// parseJWKS reads a JWKS document into its RS256 and ES256 signing keys by
// kid. Keys it cannot use (another use or algorithm, a kty not matching
// alg, no kid, a repeated kid, bad parameters) are left out and described
// in skipped; a document that is not a key set, or holds no usable key, is
// an error.
func parseJWKS(doc []byte) (keys map[string]jwk, skipped []error, err error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(doc, &set); err != nil {
		return nil, nil, fmt.Errorf("not a JWKS document: %w", err)
	}
	keys = map[string]jwk{}
	seen := map[string]bool{}
	for i, raw := range set.Keys {
		var r rawJWK
		if err := json.Unmarshal(raw, &r); err != nil {
			skipped = append(skipped, fmt.Errorf("key %d: %w", i, err))
			continue
		}
		if r.Kid != "" && seen[r.Kid] {
			// Two keys under one name: neither can be told apart.
			delete(keys, r.Kid)
			skipped = append(skipped, fmt.Errorf("key %q: kid appears more than once", r.Kid))
			continue
		}
		seen[r.Kid] = true
		k, err := parseJWK(r)
		if err != nil {
			skipped = append(skipped, fmt.Errorf("key %q: %w", r.Kid, err))
			continue
		}
		keys[r.Kid] = k
	}
	if len(keys) == 0 {
		return nil, skipped, errors.New("the key set holds no usable RS256 or ES256 signing key")
	}
	return keys, skipped, nil
}

func parseJWK(r rawJWK) (jwk, error) {
	if r.Kid == "" {
		return jwk{}, errors.New("no kid")
	}
	if r.Use != "" && r.Use != "sig" {
		return jwk{}, fmt.Errorf("use %q is not sig", r.Use)
	}
	// A key without alg is for the one algorithm its type has here.
	switch r.Kty {
	case "RSA":
		if r.Alg != "" && r.Alg != jwt.SigningMethodRS256.Alg() {
			return jwk{}, fmt.Errorf("alg %q: only RS256 is accepted for RSA keys", r.Alg)
		}
		k, err := rsaKey(r)
		return jwk{alg: jwt.SigningMethodRS256.Alg(), key: k}, err
	case "EC":
		if r.Alg != "" && r.Alg != jwt.SigningMethodES256.Alg() {
			return jwk{}, fmt.Errorf("alg %q: only ES256 is accepted for EC keys", r.Alg)
		}
		k, err := ecKey(r)
		return jwk{alg: jwt.SigningMethodES256.Alg(), key: k}, err
	}
	return jwk{}, fmt.Errorf("kty %q: want RSA or EC", r.Kty)
}

func rsaKey(r rawJWK) (*rsa.PublicKey, error) {
	n, err := base64.RawURLEncoding.DecodeString(r.N)
	if err != nil || len(n) == 0 {
		return nil, errors.New("n is not base64url")
	}
	e, err := base64.RawURLEncoding.DecodeString(r.E)
	if err != nil || len(e) == 0 || len(e) > 4 {
		return nil, errors.New("e is not a base64url exponent of at most 4 bytes")
	}
	N := new(big.Int).SetBytes(n)
	if N.BitLen() < minRSABits {
		return nil, fmt.Errorf("a %d-bit modulus is shorter than %d bits", N.BitLen(), minRSABits)
	}
	E := new(big.Int).SetBytes(e)
	if E.Int64() < 3 || E.Bit(0) == 0 {
		return nil, fmt.Errorf("exponent %d is not an odd number of at least 3", E.Int64())
	}
	return &rsa.PublicKey{N: N, E: int(E.Int64())}, nil
}

func ecKey(r rawJWK) (*ecdsa.PublicKey, error) {
	if r.Crv != "P-256" {
		return nil, fmt.Errorf("crv %q: ES256 keys are on P-256", r.Crv)
	}
	x, errX := base64.RawURLEncoding.DecodeString(r.X)
	y, errY := base64.RawURLEncoding.DecodeString(r.Y)
	if errX != nil || errY != nil || len(x) != 32 || len(y) != 32 {
		return nil, errors.New("x and y must be 32 bytes each, base64url")
	}
	k, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
	if err != nil {
		return nil, fmt.Errorf("not a P-256 point: %w", err)
	}
	return k, nil
}
