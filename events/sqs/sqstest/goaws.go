// Package sqstest runs a real SQS server (goaws) for tests: queues, dead-
// letter queues and redrive policies behave as on AWS, over the same SDK.
package sqstest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/google/uuid"

	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/events/eventbridge/ebevent"
	"github.com/parleychat/parley/internal/awsconf"
	"github.com/parleychat/parley/internal/testbin"
)

// Account is the account id in the queues' URLs and ARNs.
const Account = "000000000000"

// QueueSpec describes a queue created when the server starts. goaws does not
// type its errors, so tests create every queue up front.
type QueueSpec struct {
	Name string
	// VisibilityTimeout in seconds; 0 means 30.
	VisibilityTimeout int
	// DLQ, when set, names a dead-letter queue, created too, that receives
	// a message after MaxReceiveCount receives (default 2).
	DLQ             string
	MaxReceiveCount int
}

// StartGoaws starts goaws with the given queues on a free port and stops it
// when the test ends. The binary is found by testbin.Find ($GOAWS_BIN, PATH,
// tools/bin, where make test-deps installs it).
func StartGoaws(t testing.TB, queues ...QueueSpec) (endpoint string, client *sqs.Client) {
	t.Helper()
	bin := testbin.Find(t, "goaws", "GOAWS_BIN")
	var lastErr error
	for range 3 { // the free port may be taken before goaws binds it
		endpoint, client, err := start(t, bin, queues)
		if err == nil {
			return endpoint, client
		}
		lastErr = err
	}
	t.Fatalf("start goaws: %v", lastErr)
	return "", nil
}

// syncBuffer collects the server's output for error messages.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func start(t testing.TB, bin string, queues []QueueSpec) (string, *sqs.Client, error) {
	t.Helper()
	port, err := freePort()
	if err != nil {
		return "", nil, err
	}
	cfgPath := filepath.Join(t.TempDir(), "goaws.yaml")
	cfg, err := config(port, queues)
	if err != nil {
		return "", nil, err
	}
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		return "", nil, err
	}
	var out syncBuffer
	cmd := exec.Command(bin, "-config", cfgPath, "-loglevel", "warn")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("run %s: %w", bin, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait() // its exit is reported through exited
		close(exited)
	}()
	stop := func() {
		_ = cmd.Process.Kill() // already gone is fine
		<-exited
	}

	endpoint := "http://127.0.0.1:" + strconv.Itoa(port)
	awsCfg, err := awsconf.Load(context.Background(), awsconf.Options{Endpoint: endpoint})
	if err != nil {
		stop()
		return "", nil, err
	}
	client := sqs.NewFromConfig(awsCfg)
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := client.ListQueues(ctx, &sqs.ListQueuesInput{})
		cancel()
		if err == nil {
			break
		}
		select {
		case <-exited:
			return "", nil, fmt.Errorf("goaws exited: %s", out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return "", nil, fmt.Errorf("goaws did not answer on %s: %v; output: %s", endpoint, err, out.String())
		}
	}
	t.Cleanup(stop)
	return endpoint, client, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// config is goaws' configuration, as JSON (which its YAML reader accepts).
// Host sets the host of queue URLs only: goaws v0.5.4 always listens on all
// interfaces. Region stays empty, or goaws would put it in front of the host.
func config(port int, queues []QueueSpec) ([]byte, error) {
	type queue struct {
		Name              string
		VisibilityTimeout int    `json:",omitempty"`
		RedrivePolicy     string `json:",omitempty"`
	}
	var qs []queue
	for _, q := range queues {
		spec := queue{Name: q.Name, VisibilityTimeout: q.VisibilityTimeout}
		if q.DLQ != "" {
			n := q.MaxReceiveCount
			if n <= 0 {
				n = 2
			}
			spec.RedrivePolicy = fmt.Sprintf(`{"maxReceiveCount":%d,"deadLetterTargetArn":"arn:aws:sqs:us-east-1:%s:%s"}`, n, Account, q.DLQ)
			qs = append(qs, queue{Name: q.DLQ})
		}
		qs = append(qs, spec)
	}
	return json.Marshal(map[string]any{"Local": map[string]any{
		"Host":      "127.0.0.1",
		"Port":      strconv.Itoa(port),
		"AccountId": Account,
		"LogToFile": false,
		"QueueAttributeDefaults": map[string]int{
			"VisibilityTimeout":             30,
			"ReceiveMessageWaitTimeSeconds": 0,
		},
		"Queues": qs,
	}})
}

// QueueURL returns the URL of a queue created by StartGoaws.
func QueueURL(t testing.TB, client *sqs.Client, name string) string {
	t.Helper()
	out, err := client.GetQueueUrl(context.Background(), &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
	if err != nil {
		t.Fatalf("queue %s: %v", name, err)
	}
	return aws.ToString(out.QueueUrl)
}

// Drain receives and deletes every message of a queue until a receive
// waiting wait (in whole seconds; 0 does not wait) finds none, and returns
// them in the order received, each SQS message once.
//
// A receive whose reply is lost (a retried request on a loaded machine)
// leaves its messages in flight, so receives hide messages only briefly
// and a message seen again is not counted twice.
func Drain(t testing.TB, client *sqs.Client, queueURL string, wait time.Duration) []sqstypes.Message {
	t.Helper()
	ctx := context.Background()
	giveUp := time.Now().Add(30 * time.Second)
	seen := map[string]bool{}
	var all []sqstypes.Message
	for {
		out, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl:            aws.String(queueURL),
			MaxNumberOfMessages: 10,
			WaitTimeSeconds:     int32(wait.Round(time.Second) / time.Second),
			VisibilityTimeout:   drainVisibility,
		})
		if err != nil {
			t.Fatalf("receive from %s: %v", queueURL, err)
		}
		if len(out.Messages) == 0 {
			// A long poll on a busy local SQS can come back empty with
			// messages still queued: the queue's own count decides.
			if queued(ctx, client, queueURL) == 0 || time.Now().After(giveUp) {
				return all
			}
			time.Sleep(100 * time.Millisecond)
			continue
		}
		for _, m := range out.Messages {
			if _, err := client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(queueURL), ReceiptHandle: m.ReceiptHandle}); err != nil {
				t.Fatalf("delete from %s: %v", queueURL, err)
			}
			if id := aws.ToString(m.MessageId); !seen[id] {
				seen[id] = true
				all = append(all, m)
			}
		}
	}
}

// drainVisibility is how long, in seconds, a message Drain received stays
// hidden: short, so one whose receive reply was lost comes back quickly.
const drainVisibility = 2

// queued is how many messages the queue reports, visible or in flight; 0
// when it cannot say.
func queued(ctx context.Context, client *sqs.Client, queueURL string) int {
	out, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(queueURL),
		AttributeNames: []sqstypes.QueueAttributeName{
			sqstypes.QueueAttributeNameApproximateNumberOfMessages,
			sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
		},
	})
	if err != nil {
		return 0
	}
	n := 0
	for _, v := range out.Attributes {
		k, _ := strconv.Atoi(v)
		n += k
	}
	return n
}

// EventBridgeBody is the body an EventBridge rule puts on a worker's queue
// for env.
func EventBridgeBody(t testing.TB, env events.Envelope) string {
	t.Helper()
	detail, err := env.Encode()
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(ebevent.Event{Version: "0", ID: uuid.NewString(), DetailType: env.Type, Source: events.Source,
		Account: Account, Time: env.OccurredAt.UTC().Truncate(time.Second), Region: awsconf.DefaultRegion, Resources: []string{}, Detail: detail})
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}
