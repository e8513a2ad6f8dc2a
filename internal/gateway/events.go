package gateway

import (
	"encoding/json"
	"net/http"
	"time"

	lambdaevents "github.com/aws/aws-lambda-go/events"
)

// requestTimeLayout is API Gateway's requestTime format.
const requestTimeLayout = "02/Jan/2006:15:04:05 -0700"

func (g *Gateway) requestContext(c *conn, routeKey, eventType string, now time.Time) lambdaevents.APIGatewayWebsocketProxyRequestContext {
	id := g.newID()
	return lambdaevents.APIGatewayWebsocketProxyRequestContext{
		Stage:     g.cfg.Stage,
		APIID:     g.cfg.APIID,
		RequestID: id,
		Identity: lambdaevents.APIGatewayRequestIdentity{
			SourceIP:  c.sourceIP,
			UserAgent: c.userAgent,
		},
		ConnectedAt:       c.connectedAt.UnixMilli(),
		ConnectionID:      c.id,
		DomainName:        c.domain,
		EventType:         eventType,
		ExtendedRequestID: id,
		MessageDirection:  "IN",
		RequestTime:       now.UTC().Format(requestTimeLayout),
		RequestTimeEpoch:  now.UnixMilli(),
		RouteKey:          routeKey,
	}
}

func (g *Gateway) connectEvent(r *http.Request, c *conn, now time.Time) lambdaevents.APIGatewayWebsocketProxyRequest {
	ev := lambdaevents.APIGatewayWebsocketProxyRequest{
		RequestContext: g.requestContext(c, "$connect", "CONNECT", now),
	}
	ev.Headers, ev.MultiValueHeaders = connectHeaders(r)
	if q := r.URL.Query(); len(q) > 0 {
		ev.QueryStringParameters = make(map[string]string, len(q))
		for k, vs := range q {
			ev.QueryStringParameters[k] = vs[len(vs)-1] // last wins, as in API Gateway
		}
		ev.MultiValueQueryStringParameters = q
	}
	return ev
}

func (g *Gateway) disconnectEvent(c *conn, now time.Time) lambdaevents.APIGatewayWebsocketProxyRequest {
	ev := lambdaevents.APIGatewayWebsocketProxyRequest{
		Headers:           map[string]string{"Host": c.host},
		MultiValueHeaders: map[string][]string{"Host": {c.host}},
		RequestContext:    g.requestContext(c, "$disconnect", "DISCONNECT", now),
	}
	ev.RequestContext.DisconnectStatusCode = int64(c.closeCode)
	reason := c.closeReason
	ev.RequestContext.DisconnectReason = &reason
	return ev
}

// headerSpelling restores the spelling clients send for the WebSocket
// headers, which Go canonicalizes to "Sec-Websocket-…"; handlers written
// against API Gateway often look them up by exact name.
func headerSpelling(k string) string {
	switch k {
	case "Sec-Websocket-Key", "Sec-Websocket-Version", "Sec-Websocket-Extensions", "Sec-Websocket-Protocol":
		return "Sec-WebSocket-" + k[len("Sec-Websocket-"):]
	}
	return k
}

func connectHeaders(r *http.Request) (map[string]string, map[string][]string) {
	single := make(map[string]string, len(r.Header)+1)
	multi := make(map[string][]string, len(r.Header)+1)
	single["Host"] = r.Host
	multi["Host"] = []string{r.Host}
	for k, vs := range r.Header {
		if len(vs) == 0 {
			continue
		}
		k = headerSpelling(k)
		single[k] = vs[len(vs)-1]
		multi[k] = vs
	}
	return single, multi
}

// errorFrame is the frame API Gateway sends when a route fails.
func errorFrame(message, connectionID, requestID string) []byte {
	b, _ := json.Marshal(struct {
		Message      string `json:"message"`
		ConnectionID string `json:"connectionId"`
		RequestID    string `json:"requestId"`
	}{message, connectionID, requestID})
	return b
}
