// Package api is mqueue's HTTP front end: the routes of SPEC.md on top of an
// *engine.Engine, authentication, metrics, and the drain sequence that takes a
// node out of a load balancer without costing clients anything.
//
// Routes:
//
//	POST /api/queue[/{name}]   enqueue the body; 201 {"queue":"q","id":42}, X-Message-Id
//	GET  /api/queue[/{name}]   dequeue; 200 with the bytes, or 204; ?wait=0..30 long-polls;
//	                           ?lease=1..43200 hides it instead (X-Receipt, X-Delivery-Count,
//	                           X-Lease-Expires-At); POST ?delay=N hides a new message for N s
//	POST /api/queue/{name}/batch        up to 1000 messages, one group commit; 201 {"ids":[...]}
//	GET  /api/queue/{name}/batch?max=N  up to N messages (with lease, wait); 200 or 204
//	POST /api/queue/{name}/ack          X-Receipt; 204 once written, 410 LEASE_EXPIRED
//	POST /api/queue/{name}/nack?delay=N X-Receipt; 204, visible again after N s
//	POST /api/queue/{name}/extend?lease=N X-Receipt; 200 {"lease_expires_at":ms}
//	GET  /api/stats            200 {"queues":[...]}
//	GET  /api/stats/{name}     200 one queue, or 404 QUEUE_NOT_FOUND
//	GET  /healthz              200 "ok" while the process serves
//	GET  /readyz               200 "ok" once the engine is open and while not draining
//	GET  /metrics              Prometheus text format
//
// Errors are JSON, {"error":"CODE","message":"human sentence"}, with the
// stable codes listed in errors.go. Codes not named in SPEC.md: 400
// INVALID_SYNC (?sync= is not 0, 1, true or false), 400 INVALID_QUERY (a
// malformed query string), 400 INVALID_BODY (the request body could not be
// read to its end) and 503 NOT_READY (the engine is still recovering; retry).
// A request whose client went away before the engine answered is recorded
// in the metrics with nginx's 499.
//
// Queue names are checked with engine.ValidQueueName before the engine sees
// them. Gin routes on the decoded path, so "a%2Fb" becomes two path segments
// and matches no route (404), and ".." or "%2e%2e" reach the handler as ".."
// and fail the name check (400): no request can name a directory outside the
// data directory.
//
// Draining (Server.Serve, when its context is cancelled): /readyz answers 503
// at once while everything else is served normally for Config.DrainGrace; then
// the listener closes (new connections are refused), requests still arriving
// on open connections get 503 SHUTTING_DOWN with Retry-After and Connection:
// close, long polls are woken and answer 204, and in-flight requests finish
// (within Config.ShutdownTimeout, after which their connections are closed).
// Serve then returns and the caller closes the engine (final fsync).
package api
