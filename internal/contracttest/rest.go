// Package contracttest holds the tests' end of the machine-readable
// contracts: every REST exchange a test makes is checked against the
// OpenAPI document the API serves, and every WebSocket frame a test sends
// or receives against the AsyncAPI document's schemas. The shared request
// helpers and WebSocket dialers use it, so drift between a handler and its
// document fails the test that saw it.
package contracttest

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/config"
	vderrors "github.com/pb33f/libopenapi-validator/errors"
	"github.com/pb33f/libopenapi-validator/helpers"

	"github.com/parleychat/parley/api"
)

// REST validates exchanges against api.OpenAPI.
type REST struct {
	// mu serializes validation: the validator's caches are not documented
	// as safe for concurrent use, and tests run in parallel.
	mu sync.Mutex
	v  validator.Validator
}

// loadREST parses the document once per test binary: it is immutable.
var loadREST = sync.OnceValues(func() (*REST, error) { return NewREST(api.OpenAPI()) })

// OpenAPI returns the validator of the API's own document.
func OpenAPI() (*REST, error) { return loadREST() }

// Check validates one exchange against the API's own document (see
// REST.Check); the shared request helpers call it on every exchange.
func Check(req *http.Request, reqBody []byte, resp *http.Response, respBody []byte) error {
	doc, err := OpenAPI()
	if err != nil {
		return err
	}
	return doc.Check(req, reqBody, resp, respBody)
}

// NewREST builds a validator of doc, an OpenAPI 3.1 document.
func NewREST(doc []byte) (*REST, error) {
	d, err := libopenapi.NewDocument(doc)
	if err != nil {
		return nil, fmt.Errorf("parse the OpenAPI document: %w", err)
	}
	v, errs := validator.NewValidator(d, config.WithFormatAssertions(), config.WithContentAssertions())
	if len(errs) > 0 {
		return nil, fmt.Errorf("build the OpenAPI validator: %v", errs)
	}
	return &REST{v: v}, nil
}

// Lint checks the document itself against the OpenAPI 3.1 schema.
func (r *REST) Lint() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ok, errs := r.v.ValidateDocument(); !ok {
		return fmt.Errorf("the OpenAPI document is not valid: %s", describe(errs))
	}
	return nil
}

// Check validates one exchange: the request as sent (with its body) and
// the response as received (with its body). A request the document
// refuses must be refused by the server with a documented 4xx (or 503); one to a
// path or method the document does not have must get 404 or 405. Every
// response of a documented operation must match the document: its status,
// headers and body.
func (r *REST) Check(req *http.Request, reqBody []byte, resp *http.Response, respBody []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	what := req.Method + " " + req.URL.RequestURI()
	rq := req.Clone(req.Context())
	rq.Body = io.NopCloser(bytes.NewReader(reqBody))
	rq.ContentLength = int64(len(reqBody))
	ok, reqErrs := r.v.ValidateHttpRequestSync(rq)
	if !ok {
		if undocumented(reqErrs) {
			if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed {
				return fmt.Errorf("%s is not in the OpenAPI document, yet the server answered %d (a route the document lacks?): %s",
					what, resp.StatusCode, describe(reqErrs))
			}
			return nil
		}
		// 503 too: a server may refuse before it reads the request
		// (a feature not configured, overload).
		if resp.StatusCode < 400 || resp.StatusCode >= 500 && resp.StatusCode != http.StatusServiceUnavailable {
			return fmt.Errorf("%s: the OpenAPI document refuses this request (%s), yet the server answered %d",
				what, describe(reqErrs), resp.StatusCode)
		}
	}
	rs := *resp
	rs.Body = io.NopCloser(bytes.NewReader(respBody))
	rq.Body = io.NopCloser(bytes.NewReader(reqBody))
	if ok, errs := r.v.ValidateHttpResponse(rq, &rs); !ok {
		return fmt.Errorf("%s: response %d does not match the OpenAPI document: %s\nbody: %.2000s",
			what, resp.StatusCode, describe(errs), respBody)
	}
	return nil
}

// undocumented reports whether errs say the path or its method is not in
// the document, rather than that the request breaks the operation's rules.
func undocumented(errs []*vderrors.ValidationError) bool {
	for _, e := range errs {
		if e.ValidationType == helpers.PathValidation ||
			e.ValidationSubType == helpers.ValidationMissingOperation {
			return true
		}
	}
	return false
}

func describe(errs []*vderrors.ValidationError) string {
	var b strings.Builder
	for i, e := range errs {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(e.Message)
		if e.Reason != "" && e.Reason != e.Message {
			b.WriteString(": " + e.Reason)
		}
		for _, s := range e.SchemaValidationErrors {
			fmt.Fprintf(&b, " [%s: %s]", s.FieldPath, s.Reason)
		}
	}
	return b.String()
}
