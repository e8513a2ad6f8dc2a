// Package lambdafn names the Lambda functions of the one chat binary: the
// CHAT_LAMBDA_HANDLER values the stack sets and the binary dispatches on.
// Both sides import these names, so a function the stack creates always has
// a handler in the binary, and the other way round.
package lambdafn

import "github.com/parleychat/parley/events"

// The edge handlers: they validate, authorize and publish.
const (
	WSConnect    = "ws-connect"
	WSDisconnect = "ws-disconnect"
	WSDefault    = "ws-default"
	API          = "api"
)

// Migrate applies the database migrations as a CloudFormation custom
// resource: the stack invokes it on every deploy that changes them, before
// any other function is updated.
const Migrate = "migrate"

const workerPrefix = "worker-"

// Worker is the handler name of a worker's SQS consumer. Like the worker
// name it embeds, it names a deployed function, so it must never change.
func Worker(name string) string { return workerPrefix + name }

// Handler is one function of the binary.
type Handler struct {
	Name        string // CHAT_LAMBDA_HANDLER value
	Worker      string // the worker it runs on its queue, "" for an edge handler
	Description string
}

// All lists every handler: the edge ones, then one per worker of
// events.Routes(), so a new worker gets its function without another list.
func All() []Handler {
	hs := []Handler{
		{Name: WSConnect, Description: "WebSocket $connect"},
		{Name: WSDisconnect, Description: "WebSocket $disconnect"},
		{Name: WSDefault, Description: "WebSocket $default"},
		{Name: API, Description: "REST API behind an HTTP API (payload 2.0)"},
		{Name: Migrate, Description: "database migrations, as a CloudFormation custom resource"},
	}
	for _, r := range events.Routes() {
		hs = append(hs, Handler{Name: Worker(r.Worker), Worker: r.Worker, Description: r.Worker + " on its SQS queue"})
	}
	return hs
}

// Find returns the handler called name.
func Find(name string) (Handler, bool) {
	for _, h := range All() {
		if h.Name == name {
			return h, true
		}
	}
	return Handler{}, false
}

// Names lists every handler name, in the order of All.
func Names() []string {
	var names []string
	for _, h := range All() {
		names = append(names, h.Name)
	}
	return names
}

// IsWebSocket reports whether name is one of the WebSocket route handlers,
// which need the connection management endpoint.
func IsWebSocket(name string) bool {
	return name == WSConnect || name == WSDisconnect || name == WSDefault
}
