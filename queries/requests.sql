-- name: InsertMessageRequest :one
INSERT INTO message_requests (sender_id, client_message_id, message_id, request_hash, envelope)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT DO NOTHING
RETURNING message_id;

-- name: GetMessageRequest :one
SELECT * FROM message_requests WHERE sender_id = $1 AND client_message_id = $2;
