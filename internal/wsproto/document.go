package wsproto

import _ "embed"

// asyncAPI documents every frame of this package; GET /asyncapi.json
// serves it and the tests validate frames against its schemas.
//
//go:embed asyncapi.json
var asyncAPI []byte

// AsyncAPI returns the AsyncAPI 3.0 document of the WebSocket protocol.
func AsyncAPI() []byte { return asyncAPI }
