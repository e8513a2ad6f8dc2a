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

// Handler adapts h to an SQS-triggered Lambda. The batch's records are
// handed to h as one batch, in order (the persister stores them in one
// transaction, fanout looks their users up at once). A record that fails,
// including one whose body is not a chat event, is reported in
// BatchItemFailures; the others are not. If the batch panics as a whole, its
// records are handled one by one, so that the one that panics fails alone.
// The returned error is always nil: every record's fate is in the response.
func Handler(h events.BatchHandler, logger *slog.Logger) func(ctx context.Context, ev lambdaevents.SQSEvent) (lambdaevents.SQSEventResponse, error) {
	if logger == nil {
		logger = slog.Default()
	}
	return func(ctx context.Context, ev lambdaevents.SQSEvent) (lambdaevents.SQSEventResponse, error) {
		failed := make([]bool, len(ev.Records))
		var envs []events.Envelope
		var recs []int // envs[k] is ev.Records[recs[k]]
		for i, rec := range ev.Records {
			env, err := ebevent.Decode([]byte(rec.Body))
			if err != nil {
				recordLog(logger, rec).ErrorContext(ctx, "record is not a chat event; leaving it for the dead-letter queue", "error", err)
				failed[i] = true
				continue
			}
			envs, recs = append(envs, env), append(recs, i)
		}
		if len(envs) > 0 {
			for k, err := range handle(ctx, h, logger, envs) {
				if err != nil {
					rec := ev.Records[recs[k]]
					logFailure(ctx, recordLog(logger, rec).With("event_id", envs[k].ID, "event_type", envs[k].Type), err)
					failed[recs[k]] = true
				}
			}
		}
		resp := lambdaevents.SQSEventResponse{BatchItemFailures: []lambdaevents.SQSBatchItemFailure{}}
		for i, f := range failed {
			if f {
				resp.BatchItemFailures = append(resp.BatchItemFailures, lambdaevents.SQSBatchItemFailure{ItemIdentifier: ev.Records[i].MessageId})
			}
		}
		return resp, nil
	}
}

// handle runs the batch and returns one result per event.
func handle(ctx context.Context, h events.BatchHandler, logger *slog.Logger, envs []events.Envelope) []error {
	if err := ctx.Err(); err != nil {
		// Out of time before starting: leave the batch for redelivery.
		logger.WarnContext(ctx, "not handled before the invocation ended; the records will be redelivered", "error", err)
		errs := make([]error, len(envs))
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	errs, panicked := events.InvokeBatch(ctx, h, envs)
	switch {
	case panicked == nil:
		return errs
	case len(envs) == 1:
		return []error{panicked}
	}
	logger.WarnContext(ctx, "batch handler panicked; handling its records one by one", "records", len(envs), "error", panicked)
	errs = make([]error, len(envs))
	for i := range envs {
		res, p := events.InvokeBatch(ctx, h, envs[i:i+1])
		if p != nil {
			errs[i] = p
		} else {
			errs[i] = res[0]
		}
	}
	return errs
}

func recordLog(logger *slog.Logger, rec lambdaevents.SQSMessage) *slog.Logger {
	return logger.With("sqs_message_id", rec.MessageId, "receive_count", rec.Attributes["ApproximateReceiveCount"])
}

// logFailure logs a record's failure, once.
func logFailure(ctx context.Context, log *slog.Logger, err error) {
	if events.Classify(err) == events.DeadLetter {
		// Reported like any failure: the redrive policy, not this function,
		// moves it to the dead-letter queue.
		log.ErrorContext(ctx, "handler failed permanently; leaving the record for the dead-letter queue", "error", err)
		return
	}
	log.WarnContext(ctx, "handler failed; the record returns after the visibility timeout", "error", err)
}
