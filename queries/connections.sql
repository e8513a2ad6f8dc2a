-- name: PutConnection :exec
-- A connection in feed mode first takes its user's feed head lock, as a
-- persister's batch does (TakeFeedHeads), so that it is recorded either
-- before a batch looks up whom to announce its entries to (FeedListeners),
-- or after that batch committed, when the client's sync after connecting
-- sees the entries.
WITH head AS (
    INSERT INTO user_feed_heads (user_id)
    SELECT @user_id::bigint WHERE @feed::boolean
    ON CONFLICT (user_id) DO UPDATE SET head = user_feed_heads.head
    RETURNING user_id
)
INSERT INTO ws_connections (connection_id, user_id, connected_at, last_ping_at, expires_at, gateway, token_expires_at, feed)
VALUES (@connection_id, @user_id, @connected_at, @last_ping_at, @expires_at, @gateway, @token_expires_at, @feed)
ON CONFLICT (connection_id) DO UPDATE
SET user_id = EXCLUDED.user_id, connected_at = EXCLUDED.connected_at,
    last_ping_at = EXCLUDED.last_ping_at, expires_at = EXCLUDED.expires_at,
    gateway = EXCLUDED.gateway, token_expires_at = EXCLUDED.token_expires_at,
    feed = EXCLUDED.feed;

-- name: GetConnection :one
SELECT * FROM ws_connections WHERE connection_id = $1;

-- name: DeleteConnection :exec
-- A feed-mode connection's removal is noted on its user's feed head
-- (FeedListeners).
WITH gone AS (
    DELETE FROM ws_connections WHERE connection_id = $1 RETURNING user_id, feed
)
UPDATE user_feed_heads h SET feed_closed_at = now()
FROM gone WHERE gone.feed AND h.user_id = gone.user_id;

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
-- announced offline. Removed feed-mode connections are noted on their
-- users' feed heads, as by DeleteConnection.
WITH gone AS (
    DELETE FROM ws_connections WHERE gateway = $1 RETURNING user_id, feed
), noted AS (
    UPDATE user_feed_heads h SET feed_closed_at = now()
    FROM (SELECT DISTINCT g.user_id FROM gone g WHERE g.feed) f WHERE h.user_id = f.user_id
)
SELECT gone.user_id FROM gone;
