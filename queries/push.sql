-- name: UpsertPushDevice :exec
-- Registering is idempotent, and a token registered by another user moves
-- to this one: a phone belongs to whoever signed in on it last.
INSERT INTO push_devices (token, user_id, platform, app_version)
VALUES (@token, @user_id, @platform, sqlc.narg('app_version'))
ON CONFLICT (token) DO UPDATE
SET user_id = EXCLUDED.user_id, platform = EXCLUDED.platform,
    app_version = EXCLUDED.app_version, updated_at = now(),
    registered_at = CASE WHEN push_devices.user_id = EXCLUDED.user_id
        THEN push_devices.registered_at ELSE now() END;

-- name: DeletePushDevice :execrows
-- Only the owner's: a token someone else holds now is left alone.
DELETE FROM push_devices WHERE token = @token AND user_id = @user_id;

-- name: ListPushDevices :many
SELECT * FROM push_devices WHERE user_id = ANY(@user_ids::bigint[]) ORDER BY user_id, token;

-- name: PushContext :one
-- What a push of one message to one recipient (a group's member) needs, in
-- one round trip: its position, whether they read it or it was unsent
-- meanwhile, whether they muted the conversation, and their badge (the
-- unread count of every conversation they see).
SELECT m.seq,
       (m.read_at IS NOT NULL OR (m.recipient_id IS NULL AND COALESCE(p.last_read_seq, 0) >= m.seq))::boolean AS already_read,
       (m.unsent_at IS NOT NULL)::boolean AS unsent, COALESCE(p.muted, false)::boolean AS muted,
       (SELECT COALESCE(sum(v.unread_count), 0) FROM participant_conversations v
         WHERE v.user_id = @user_id::bigint
           AND (v.deleted_at IS NULL OR v.last_message_at > v.deleted_at))::bigint AS badge
FROM messages m
LEFT JOIN conversation_participants p ON p.conversation_id = m.conversation_id AND p.user_id = @user_id::bigint
WHERE m.id = @message_id;

-- name: BadgeAfterRead :one
-- A user's badge after a read, leaving out the messages just read: the
-- persister may not have stored the read yet. One statement, so both parts
-- see the same snapshot whether or not the read is stored meanwhile.
SELECT GREATEST(
    (SELECT COALESCE(sum(v.unread_count), 0) FROM participant_conversations v
      WHERE v.user_id = @user_id
        AND (v.deleted_at IS NULL OR v.last_message_at > v.deleted_at))
  - (SELECT count(*) FROM messages
      WHERE id = ANY(@ids::uuid[]) AND recipient_id = @user_id AND read_at IS NULL AND unsent_at IS NULL)
    -- A group read moves the reader's position: every message they count
    -- as unread up to the highest read one is read (the unread count's
    -- conditions, participant_conversations).
  - (SELECT count(*) FROM conversation_participants p
      JOIN LATERAL (SELECT max(r.seq) AS upto FROM messages r
                    WHERE r.id = ANY(@ids::uuid[]) AND r.conversation_id = p.conversation_id
                      AND r.recipient_id IS NULL AND r.sender_id <> @user_id) r ON true
      JOIN messages u ON u.conversation_id = p.conversation_id AND u.seq > p.last_read_seq AND u.seq <= r.upto
      WHERE p.user_id = @user_id
        AND p.conversation_id = ANY(ARRAY(SELECT g.conversation_id FROM messages g
                                          WHERE g.id = ANY(@ids::uuid[]) AND g.recipient_id IS NULL))
        AND u.sender_id <> @user_id AND u.content_type <> 'system' AND u.unsent_at IS NULL
        AND u.created_at >= p.joined_at AND u.created_at <= COALESCE(p.left_at, 'infinity')
        AND u.created_at > COALESCE(p.deleted_at, '-infinity')
        AND NOT EXISTS (SELECT 1 FROM message_deletions d WHERE d.message_id = u.id AND d.user_id = @user_id)), 0)::bigint;

-- name: ClaimPushDeliveries :many
-- Claims the devices a message has not been pushed to; a redelivery or a
-- replay finds them claimed and pushes nothing.
INSERT INTO push_deliveries (message_id, token, user_id)
SELECT @message_id::uuid, unnest(@tokens::text[]), @user_id::bigint
ON CONFLICT DO NOTHING
RETURNING token;

-- name: ReleasePushDelivery :exec
-- Gives back the claim of a send that failed for a reason worth retrying.
DELETE FROM push_deliveries WHERE message_id = @message_id AND token = @token;

-- name: SetPushTicket :exec
UPDATE push_deliveries SET ticket_id = @ticket_id WHERE message_id = @message_id AND token = @token;

-- name: ListPushTickets :many
-- Expo tickets old enough for their receipts to be ready.
SELECT message_id, token, user_id, ticket_id::text AS ticket_id, pushed_at FROM push_deliveries
WHERE ticket_id IS NOT NULL AND pushed_at < @before::timestamptz
ORDER BY pushed_at
LIMIT @max_rows;

-- name: ClearPushTickets :exec
UPDATE push_deliveries SET ticket_id = NULL WHERE ticket_id = ANY(@ticket_ids::text[]);

-- name: PrunePushDeliveries :execrows
DELETE FROM push_deliveries WHERE pushed_at < @before::timestamptz;
