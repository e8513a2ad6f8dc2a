package awsconf

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

// afterResponse does to a request's body what net/http may do once smithy
// has closed it on the response's arrival: check, by a copy to io.Discard,
// that no bytes are left. It answers every request with an empty JSON
// object and records the copy's error.
type afterResponse struct{ err error }

func (a *afterResponse) Do(req *http.Request) (*http.Response, error) {
	_ = req.Body.Close()
	_, a.err = io.Copy(io.Discard, req.Body)
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"application/x-amz-json-1.0"}},
		Body: io.NopCloser(strings.NewReader("{}")), Request: req}, nil
}

// TestClosedRequestBodyEndsCleanly: through the app's HTTP client, an SDK
// request body closed before the transport's last check reads as its end,
// not as a failed write (which makes net/http close the connection under
// the response, and the SDK send the request again). The first case shows
// the SDK's own behaviour: should it ever read clean, httpClient can go.
func TestClosedRequestBodyEndsCleanly(t *testing.T) {
	for _, tc := range []struct {
		name   string
		client func(aws.HTTPClient) aws.HTTPClient
		clean  bool
	}{
		{"the SDK's body as is", func(c aws.HTTPClient) aws.HTTPClient { return c }, false},
		{"the app's HTTP client", newHTTPClient, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &afterResponse{}
			cfg, err := Load(context.Background(), Options{Endpoint: "http://127.0.0.1:1"})
			if err != nil {
				t.Fatal(err)
			}
			cfg.HTTPClient = tc.client(rec)
			// The answer does not matter (it lacks the MD5 the SDK checks):
			// what the copy of the body met does.
			_, _ = sqs.NewFromConfig(cfg).SendMessage(context.Background(), &sqs.SendMessageInput{
				QueueUrl: aws.String("http://127.0.0.1:1/queue/q"), MessageBody: aws.String("hello"),
			})
			if clean := rec.err == nil; clean != tc.clean {
				t.Fatalf("copy of the closed body: %v; want clean=%v", rec.err, tc.clean)
			}
		})
	}
}
