-- name: InsertReport :one
-- A repeat of an existing report answers the existing one unchanged.
INSERT INTO reports (reporter_id, reported_user_id, message_id, conversation_id, content_type,
                     text_content, media_key, message_created_at, reason, details, created_at)
VALUES (@reporter_id, @reported_user_id, sqlc.narg('message_id'), sqlc.narg('conversation_id'), sqlc.narg('content_type'),
        sqlc.narg('text_content'), sqlc.narg('media_key'), sqlc.narg('message_created_at'), @reason, @details, @created_at)
ON CONFLICT (reporter_id, reported_user_id, (COALESCE(message_id, '00000000-0000-0000-0000-000000000000'::uuid)))
DO UPDATE SET reporter_id = reports.reporter_id
RETURNING *;

-- name: ListReports :many
-- Newest first; reported_user_id 0 means every user.
SELECT * FROM reports
WHERE (@reported_user_id::bigint = 0 OR reported_user_id = @reported_user_id::bigint)
  AND created_at >= @since::timestamptz
ORDER BY created_at DESC, id DESC
LIMIT @page_limit;
