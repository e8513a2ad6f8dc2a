package sqs_test

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/parleychat/parley/events/sqs"
	"github.com/parleychat/parley/events/sqs/sqstest"
	"github.com/parleychat/parley/internal/awsconf"
)

// Status reads a worker queue's and its dead-letter queue's counts from a
// real SQS server (goaws), in flight included.
func TestStatus(t *testing.T) {
	endpoint, client := sqstest.StartGoaws(t, sqstest.QueueSpec{Name: "persister", DLQ: "persister-dlq"})
	source, dlq := sqstest.QueueURL(t, client, "persister"), sqstest.QueueURL(t, client, "persister-dlq")
	opts := awsconf.Options{Endpoint: endpoint}
	ctx := context.Background()
	send := func(url string, n int) {
		for range n {
			if _, err := client.SendMessage(ctx, &awssqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String("{}")}); err != nil {
				t.Fatal(err)
			}
		}
	}
	send(source, 3)
	send(dlq, 2)
	s, err := sqs.Status(ctx, opts, "persister", source, dlq)
	if err != nil {
		t.Fatal(err)
	}
	if s.Worker != "persister" || s.Depth != 3 || s.DeadLetters != 2 || s.OldestAge != -1 || s.Consumers != -1 {
		t.Fatalf("status %+v, want depth 3, 2 dead letters, age and consumers unknown", s)
	}
	// One received and not deleted: in flight, still in the queue. (goaws
	// also counts it as visible, where SQS does not: at least 3.)
	if _, err := client.ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{QueueUrl: aws.String(source), MaxNumberOfMessages: 1, VisibilityTimeout: 60}); err != nil {
		t.Fatal(err)
	}
	if s, err = sqs.Status(ctx, opts, "persister", source, dlq); err != nil || s.Depth < 3 {
		t.Fatalf("status with one in flight %+v, %v: want depth at least 3", s, err)
	}
	// Without a dead-letter queue: none counted.
	if s, err = sqs.Status(ctx, opts, "persister", source, ""); err != nil || s.DeadLetters != 0 {
		t.Fatalf("status %+v, %v", s, err)
	}
	if _, err := sqs.Status(ctx, opts, "persister", endpoint+"/queue/missing", ""); err == nil {
		t.Fatal("a missing queue answered a status")
	}
}
