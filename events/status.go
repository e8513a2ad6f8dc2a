package events

import "time"

// QueueStatus is one worker's queue as an operator sees it, whichever
// transport holds it (chat status, GET /status, the queue metrics).
type QueueStatus struct {
	Worker string `json:"worker"`
	// Depth is the events waiting or being handled.
	Depth int64 `json:"depth"`
	// OldestAge is the age of the oldest event not yet handled; -1 when
	// the transport cannot say (SQS reports it only to CloudWatch).
	OldestAge time.Duration `json:"-"`
	// DeadLetters is the events set aside and not redriven.
	DeadLetters int64 `json:"dead_letters"`
	// Consumers is the processes consuming the queue; -1 when unknown.
	Consumers int `json:"consumers"`
}
