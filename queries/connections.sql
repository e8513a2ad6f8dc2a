-- name: PutConnection :exec
INSERT INTO ws_connections (connection_id, user_id, connected_at, last_ping_at, expires_at, gateway, token_expires_at, feed)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (connection_id) DO UPDATE
SET user_id = EXCLUDED.user_id, connected_at = EXCLUDED.connected_at,
    last_ping_at = EXCLUDED.last_ping_at, expires_at = EXCLUDED.expires_at,
    gateway = EXCLUDED.gateway, token_expires_at = EXCLUDED.token_expires_at,
    feed = EXCLUDED.feed;

-- name: GetConnection :one
SELECT * FROM ws_connections WHERE connection_id = $1;

-- name: DeleteConnection :execrows
DELETE FROM ws_connections WHERE connection_id = $1;

-- name: TouchConnection :execrows
UPDATE ws_connections SET last_ping_at = $2, expires_at = $3 WHERE connection_id = $1;

-- name: ListConnectionsByUser :many
SELECT * FROM ws_connections
WHERE user_id = $1 AND expires_at > $2
ORDER BY connected_at;

-- name: ListConnectionsByUsers :many
-- Fanout's one lookup for a whole batch of events.
SELECT * FROM ws_connections
WHERE user_id = ANY(@user_ids::bigint[]) AND expires_at > @expires_at
ORDER BY connected_at;

-- name: DeleteExpiredConnections :execrows
DELETE FROM ws_connections WHERE expires_at <= $1;

-- name: DeleteConnectionsByGateway :many
-- The users of the removed records: those left with no connection are
-- announced offline.
DELETE FROM ws_connections WHERE gateway = $1 RETURNING user_id;
