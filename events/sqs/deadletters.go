package sqs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/parleychat/parley/events/eventbridge/ebevent"
	"github.com/parleychat/parley/internal/awsconf"
)

// HoldFor is how long List and Redrive hide the messages they receive from
// every other receiver, the worker's redrive tasks included. It is long
// enough to finish a listing or to move a batch, and short so that messages
// left hidden by a failure or a killed process are back soon. List makes
// them visible again itself once it has read them.
const HoldFor = 30 * time.Second

// DeadLetter is a message of a dead-letter queue, read without deleting it.
type DeadLetter struct {
	// MessageID is SQS's id of the message in the dead-letter queue:
	// what Redrive takes.
	MessageID string
	// EventID and EventType are the chat event's, empty when the body is
	// not a chat event.
	EventID, EventType string
	// ReceiveCount is SQS's ApproximateReceiveCount: the worker's receives,
	// and every listing's since.
	ReceiveCount int
	// Invalid says why the body is not a chat event ("" when it is one).
	Invalid string
}

// List returns up to limit messages of a dead-letter queue without deleting
// them. Receiving is the only way SQS shows a message: each listed message
// has its ApproximateReceiveCount incremented, and is hidden from other
// receivers until List ends (HoldFor at most, if making it visible again
// fails).
func List(ctx context.Context, opts awsconf.Options, queueURL string, limit int, logger *slog.Logger) ([]DeadLetter, error) {
	q, err := openQueue(ctx, opts, queueURL, logger)
	if err != nil {
		return nil, fmt.Errorf("sqs list: %w", err)
	}
	held, err := q.receiveAll(ctx, limit, func(sqstypes.Message) bool { return false })
	defer q.release(ctx, held)
	if err != nil {
		return nil, fmt.Errorf("sqs list %s: %w", queueURL, err)
	}
	out := make([]DeadLetter, 0, len(held))
	for _, m := range held {
		dl := DeadLetter{MessageID: aws.ToString(m.MessageId)}
		dl.ReceiveCount, _ = strconv.Atoi(m.Attributes[string(sqstypes.MessageSystemAttributeNameApproximateReceiveCount)])
		// Decoded as the consumer's unmarshaler does: the EventBridge
		// event around the chat envelope.
		if env, err := ebevent.Decode([]byte(aws.ToString(m.Body))); err != nil {
			dl.Invalid = err.Error()
		} else {
			dl.EventID, dl.EventType = env.ID, env.Type
		}
		out = append(out, dl)
	}
	return out, nil
}

// Redrive moves messages of a dead-letter queue back to the worker's source
// queue: the one whose SQS message id is messageID, or every one when it is
// empty. Each is sent to the source with the same body and attributes, and
// deleted from the dead-letter queue only once the send succeeded, so that a
// failure leaves a message where it was (or, if the delete fails, in both
// queues: the workers are idempotent). It returns how many messages moved,
// also when it fails part way.
func Redrive(ctx context.Context, opts awsconf.Options, dlqURL, sourceURL, messageID string, logger *slog.Logger) (int, error) {
	q, err := openQueue(ctx, opts, dlqURL, logger)
	if err != nil {
		return 0, fmt.Errorf("sqs redrive: %w", err)
	}
	if messageID == "" {
		n, err := q.moveAll(ctx, sourceURL)
		if err != nil {
			return n, fmt.Errorf("sqs redrive %s to %s: %w", dlqURL, sourceURL, err)
		}
		return n, nil
	}
	// SQS finds messages only by receiving them: receive until it comes,
	// holding the others, then let them go.
	held, err := q.receiveAll(ctx, 0, func(m sqstypes.Message) bool { return aws.ToString(m.MessageId) == messageID })
	var found *sqstypes.Message
	if n := len(held); err == nil && n > 0 && aws.ToString(held[n-1].MessageId) == messageID {
		found, held = &held[n-1], held[:n-1]
	}
	defer q.release(ctx, held)
	if err != nil {
		return 0, fmt.Errorf("sqs redrive %s from %s: %w", messageID, dlqURL, err)
	}
	if found == nil {
		return 0, fmt.Errorf("sqs redrive: no message %s in %s (or another receiver holds it: it is hidden until that receive's visibility timeout ends)", messageID, dlqURL)
	}
	if err := q.move(ctx, sourceURL, *found); err != nil {
		return 0, fmt.Errorf("sqs redrive %s from %s to %s: %w", messageID, dlqURL, sourceURL, err)
	}
	return 1, nil
}

// queue is one queue and a client for it.
type queue struct {
	client *sqs.Client
	url    string
	logger *slog.Logger
}

func openQueue(ctx context.Context, opts awsconf.Options, url string, logger *slog.Logger) (*queue, error) {
	if url == "" {
		return nil, errors.New("queue URL is required")
	}
	if logger == nil {
		logger = slog.Default()
	}
	awsCfg, err := awsconf.Load(ctx, opts)
	if err != nil {
		return nil, err
	}
	return &queue{client: sqs.NewFromConfig(awsCfg), url: url, logger: logger.With("queue", url)}, nil
}

// receive takes up to n (at most 10) messages, hidden for HoldFor. It waits
// a second for them: a long poll asks every SQS server, where a short one
// may answer empty while messages wait.
func (q *queue) receive(ctx context.Context, n int) ([]sqstypes.Message, error) {
	out, err := q.client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl:                    aws.String(q.url),
		MaxNumberOfMessages:         int32(min(max(n, 1), 10)),
		VisibilityTimeout:           int32(HoldFor / time.Second),
		WaitTimeSeconds:             1,
		MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameApproximateReceiveCount},
		MessageAttributeNames:       []string{"All"},
	})
	if err != nil {
		return nil, fmt.Errorf("receive: %w", err)
	}
	return out.Messages, nil
}

// receiveAll receives until the queue shows nothing it has not received
// yet, limit messages are held (0: no limit), or stop says so of the last
// one. It returns every distinct message received, which the caller must
// release or delete, also with an error.
func (q *queue) receiveAll(ctx context.Context, limit int, stop func(sqstypes.Message) bool) ([]sqstypes.Message, error) {
	var held []sqstypes.Message
	seen := map[string]int{} // message id → index in held
	for limit <= 0 || len(held) < limit {
		n := 10
		if limit > 0 {
			n = limit - len(held)
		}
		msgs, err := q.receive(ctx, n)
		if err != nil {
			return held, err
		}
		fresh := 0
		for i, m := range msgs {
			id := aws.ToString(m.MessageId)
			if j, ok := seen[id]; ok {
				// Back already (its hold ran out): only the new receipt
				// handle can release it.
				held[j].ReceiptHandle = m.ReceiptHandle
				continue
			}
			seen[id] = len(held)
			fresh++
			held = append(held, m)
			if stop(m) {
				q.release(ctx, msgs[i+1:])
				return held, nil
			}
		}
		if fresh == 0 {
			return held, nil
		}
	}
	return held, nil
}

// release makes held messages visible again at once. Failing that, they
// come back after HoldFor: logged, not returned.
func (q *queue) release(ctx context.Context, held []sqstypes.Message) {
	// Even when ctx is cancelled: leaving them hidden is the thing to avoid.
	ctx = context.WithoutCancel(ctx)
	for _, m := range held {
		// One at a time: goaws does not implement the batch call.
		if _, err := q.client.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
			QueueUrl: aws.String(q.url), ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 0,
		}); err != nil {
			q.logger.WarnContext(ctx, "could not make a message visible again; it returns after the hold", "sqs_message_id", aws.ToString(m.MessageId), "hold", HoldFor, "error", err)
		}
	}
}

// moveAll moves every message to sourceURL, a batch at a time, until a
// receive finds none. On a failure the rest of the batch is released.
func (q *queue) moveAll(ctx context.Context, sourceURL string) (int, error) {
	moved := 0
	for {
		msgs, err := q.receive(ctx, 10)
		if err != nil {
			return moved, err
		}
		if len(msgs) == 0 {
			return moved, nil
		}
		for i, m := range msgs {
			if err := q.move(ctx, sourceURL, m); err != nil {
				q.release(ctx, msgs[i+1:])
				return moved, err
			}
			moved++
		}
	}
}

// move sends one message to sourceURL, then deletes it from q. One send per
// message: goaws' SendMessageBatch reply is misread by the SDK.
func (q *queue) move(ctx context.Context, sourceURL string, m sqstypes.Message) error {
	id := aws.ToString(m.MessageId)
	if _, err := q.client.SendMessage(ctx, &sqs.SendMessageInput{
		QueueUrl: aws.String(sourceURL), MessageBody: m.Body, MessageAttributes: m.MessageAttributes,
	}); err != nil {
		q.release(ctx, []sqstypes.Message{m})
		return fmt.Errorf("send %s: %w", id, err)
	}
	// The copy is on the source queue: from here the message must not be
	// lost to a cancelled context.
	if _, err := q.client.DeleteMessage(context.WithoutCancel(ctx), &sqs.DeleteMessageInput{
		QueueUrl: aws.String(q.url), ReceiptHandle: m.ReceiptHandle,
	}); err != nil {
		return fmt.Errorf("message %s is on the source queue but still in the dead-letter queue (its worker may get it twice): delete: %w", id, err)
	}
	return nil
}
