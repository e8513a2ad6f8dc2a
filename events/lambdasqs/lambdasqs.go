// Package lambdasqs runs a worker's handler inside an AWS Lambda fed by the
// worker's SQS queue, whose messages are EventBridge events carrying chat
// envelopes. It reports partial batch failures, so that only the records
// that failed are redelivered (the event source mapping must enable
// ReportBatchItemFailures); the queue's redrive policy dead-letters a record
// that keeps failing.
package lambdasqs

import (
	"context"
	"log/slog"

	lambdaevents "github.com/aws/aws-lambda-go/events"

	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/events/eventbridge/ebevent"
)

// Handler adapts h to an SQS-triggered Lambda. Records are handled one after
// the other, in order; a failure does not stop the later ones. A record that
// fails, including one whose body is not a chat event, is reported in
// BatchItemFailures. The returned error is always nil: every record's fate is
// in the response.
func Handler(h events.Handler, logger *slog.Logger) func(ctx context.Context, ev lambdaevents.SQSEvent) (lambdaevents.SQSEventResponse, error) {
	if logger == nil {
		logger = slog.Default()
	}
	return func(ctx context.Context, ev lambdaevents.SQSEvent) (lambdaevents.SQSEventResponse, error) {
		resp := lambdaevents.SQSEventResponse{BatchItemFailures: []lambdaevents.SQSBatchItemFailure{}}
		for _, rec := range ev.Records {
			if err := handleRecord(ctx, h, logger, rec); err != nil {
				resp.BatchItemFailures = append(resp.BatchItemFailures, lambdaevents.SQSBatchItemFailure{ItemIdentifier: rec.MessageId})
			}
		}
		return resp, nil
	}
}

// handleRecord handles one record and logs its failure, once.
func handleRecord(ctx context.Context, h events.Handler, logger *slog.Logger, rec lambdaevents.SQSMessage) error {
	log := logger.With("sqs_message_id", rec.MessageId, "receive_count", rec.Attributes["ApproximateReceiveCount"])
	if err := ctx.Err(); err != nil {
		// Out of time: leave the rest of the batch for redelivery.
		log.WarnContext(ctx, "not handled before the invocation ended; the record will be redelivered", "error", err)
		return err
	}
	env, err := ebevent.Decode([]byte(rec.Body))
	if err != nil {
		log.ErrorContext(ctx, "record is not a chat event; leaving it for the dead-letter queue", "error", err)
		return err
	}
	log = log.With("event_id", env.ID, "event_type", env.Type)
	// Invoke turns a panic into an error, so that the other records of the
	// batch are still handled and reported.
	err = events.Invoke(ctx, h, env)
	switch events.Classify(err) {
	case events.Ack:
		return nil
	case events.DeadLetter:
		// Reported like any failure: the redrive policy, not this function,
		// moves it to the dead-letter queue.
		log.ErrorContext(ctx, "handler failed permanently; leaving the record for the dead-letter queue", "error", err)
	default:
		log.WarnContext(ctx, "handler failed; the record returns after the visibility timeout", "error", err)
	}
	return err
}
