package awsconf

import (
	"io"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
)

// httpClient is the HTTP client of every AWS client of the app: the SDK's,
// handing net/http request bodies without io.WriterTo. smithy-go closes a
// request's body as soon as the response's headers arrive, and the closed
// body's WriteTo answers io.EOF as an error. net/http, checking after the
// last byte that the body holds no more (a copy to io.Discard, which uses
// WriteTo), can meet that closed body, takes the io.EOF for a failed write
// and closes the connection under the response being read; the SDK then
// sends the request again. For SQS ReceiveMessage that is a second receive,
// while the first one's messages stay hidden for their visibility timeout.
// A closed body's Read answers a plain io.EOF: the end, for net/http.
type httpClient struct{ c aws.HTTPClient }

func (h httpClient) Do(req *http.Request) (*http.Response, error) {
	if _, ok := req.Body.(io.WriterTo); ok {
		req.Body = readCloser{req.Body}
	}
	return h.c.Do(req)
}

// readCloser hides every method of a body but Read and Close.
type readCloser struct{ io.ReadCloser }

// newHTTPClient wraps c, the SDK's buildable client when nil.
func newHTTPClient(c aws.HTTPClient) aws.HTTPClient {
	switch c := c.(type) {
	case httpClient:
		return c
	case nil:
		return httpClient{awshttp.NewBuildableClient()}
	default:
		return httpClient{c}
	}
}

// WithTransportOptions returns c, a configuration's HTTP client, with opts
// applied to its transport: its own when it is the SDK's buildable one
// (a CA bundle it was configured with, say), a new one's otherwise.
func WithTransportOptions(c aws.HTTPClient, opts ...func(*http.Transport)) aws.HTTPClient {
	if h, ok := c.(httpClient); ok {
		c = h.c
	}
	bc, ok := c.(*awshttp.BuildableClient)
	if !ok || bc == nil {
		bc = awshttp.NewBuildableClient()
	}
	return newHTTPClient(bc.WithTransportOptions(opts...))
}
