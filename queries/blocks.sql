-- name: InsertBlock :one
-- Blocking twice keeps the first block's time, and answers it.
INSERT INTO blocks (blocker_id, blocked_id, created_at)
VALUES (@blocker_id, @blocked_id, @created_at)
ON CONFLICT (blocker_id, blocked_id) DO UPDATE SET created_at = blocks.created_at
RETURNING created_at;

-- name: DeleteBlock :exec
DELETE FROM blocks WHERE blocker_id = @blocker_id AND blocked_id = @blocked_id;

-- name: ListBlocks :many
-- A user's blocks, newest first.
SELECT blocked_id, created_at FROM blocks
WHERE blocker_id = @blocker_id
ORDER BY created_at DESC, blocked_id
LIMIT @page_limit;

-- name: ListBlockedIDs :many
-- Everyone a user blocks, for the ingress's cache.
SELECT blocked_id FROM blocks WHERE blocker_id = @blocker_id;

-- name: BlockExists :one
SELECT EXISTS (SELECT 1 FROM blocks WHERE blocker_id = @blocker_id AND blocked_id = @blocked_id);

-- name: ListBlockedAmong :many
-- Of the given users, those blocked by user_id or blocking them: presence
-- is hidden both ways.
SELECT b.blocked_id AS user_id FROM blocks b
WHERE b.blocker_id = @user_id AND b.blocked_id = ANY(@user_ids::bigint[])
UNION
SELECT b.blocker_id FROM blocks b
WHERE b.blocked_id = @user_id AND b.blocker_id = ANY(@user_ids::bigint[]);
