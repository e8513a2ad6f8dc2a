// Package authtest is an identity provider for tests: it holds RS256 and
// ES256 signing keys, serves their public halves as a JWKS document over
// real HTTP (an httptest server standing in for Cognito's, Auth0's or
// Keycloak's jwks.json endpoint) and signs tokens with them.
package authtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// Key is a signing key of the provider.
type Key struct {
	ID     string
	Method jwt.SigningMethod // RS256 or ES256
	signer any               // *rsa.PrivateKey or *ecdsa.PrivateKey
	jwk    map[string]string // its public half as published
}

// JWK is the key's public half as a JWKS entry; tests may change members.
func (k *Key) JWK() map[string]string {
	m := make(map[string]string, len(k.jwk))
	for n, v := range k.jwk {
		m[n] = v
	}
	return m
}

// Private is the private key, for signing tokens by hand.
func (k *Key) Private() any { return k.signer }

// Issuer serves a JWKS document at URL.
type Issuer struct {
	URL     string
	fetches atomic.Int64

	mu  sync.Mutex
	doc []byte // what GET URL answers; nil = the published keys
	pub []map[string]string
}

// NewIssuer starts the JWKS server; it stops when the test ends.
func NewIssuer(t testing.TB) *Issuer {
	t.Helper()
	i := &Issuer{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i.fetches.Add(1)
		i.mu.Lock()
		doc := i.doc
		if doc == nil {
			doc, _ = json.Marshal(map[string]any{"keys": i.pub}) // strings only
		}
		i.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc)
	}))
	t.Cleanup(srv.Close)
	i.URL = srv.URL + "/.well-known/jwks.json"
	return i
}

// NewRSAKey makes a 2048-bit RS256 key (not published yet).
func NewRSAKey(t testing.TB, id string) *Key {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return &Key{ID: id, Method: jwt.SigningMethodRS256, signer: k, jwk: map[string]string{
		"kty": "RSA", "kid": id, "use": "sig", "alg": "RS256",
		"n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes()),
	}}
}

// NewECKey makes a P-256 ES256 key (not published yet).
func NewECKey(t testing.TB, id string) *Key {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	point, err := k.PublicKey.Bytes() // 0x04 || x || y
	if err != nil {
		t.Fatal(err)
	}
	return &Key{ID: id, Method: jwt.SigningMethodES256, signer: k, jwk: map[string]string{
		"kty": "EC", "kid": id, "use": "sig", "alg": "ES256", "crv": "P-256",
		"x": b64(point[1:33]), "y": b64(point[33:]),
	}}
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// Publish makes the document list exactly these JWKS entries.
func (i *Issuer) Publish(entries ...map[string]string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.doc, i.pub = nil, entries
}

// PublishKeys publishes the keys' public halves.
func (i *Issuer) PublishKeys(keys ...*Key) {
	entries := make([]map[string]string, len(keys))
	for n, k := range keys {
		entries[n] = k.JWK()
	}
	i.Publish(entries...)
}

// ServeRaw makes the server answer doc as it is.
func (i *Issuer) ServeRaw(doc []byte) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.doc = doc
}

// Fetches counts the requests the server has answered.
func (i *Issuer) Fetches() int { return int(i.fetches.Load()) }

// Sign makes a token with k, its kid in the header.
func Sign(t testing.TB, k *Key, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(k.Method, claims)
	tok.Header["kid"] = k.ID
	s, err := tok.SignedString(k.signer)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// PublicPEM is the key's public half in PEM, as anyone may hold it: the
// "secret" of an alg-confusion attack (an HS256 token keyed with it).
func (k *Key) PublicPEM(t testing.TB) []byte {
	t.Helper()
	var pub any
	switch s := k.signer.(type) {
	case *rsa.PrivateKey:
		pub = &s.PublicKey
	case *ecdsa.PrivateKey:
		pub = &s.PublicKey
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}
