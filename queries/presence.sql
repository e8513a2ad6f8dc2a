-- name: SetLastSeen :exec
-- Records a batch of debounced offlines; an older time never overwrites a
-- newer one, so a redelivered or late event changes nothing.
INSERT INTO user_presence (user_id, last_seen_at)
SELECT unnest(@user_ids::bigint[]), unnest(@seen_ats::timestamptz[])
ON CONFLICT (user_id) DO UPDATE
SET last_seen_at = GREATEST(COALESCE(user_presence.last_seen_at, EXCLUDED.last_seen_at), EXCLUDED.last_seen_at);

-- name: SetHideLastSeen :exec
INSERT INTO user_presence (user_id, hide_last_seen)
VALUES (@user_id, @hide_last_seen)
ON CONFLICT (user_id) DO UPDATE SET hide_last_seen = EXCLUDED.hide_last_seen;

-- name: ListPresence :many
-- Stored presence of the given users; users never seen have no row.
SELECT user_id, last_seen_at, hide_last_seen FROM user_presence
WHERE user_id = ANY(@user_ids::bigint[]);

-- name: ListPresenceAudience :many
-- Who may learn of each given user's presence: everyone sharing a
-- conversation with them, except where either blocks the other, and nobody
-- when the user hides their last seen. receiver_hides says the receiver
-- hides their own last seen, and so sees no one else's.
SELECT DISTINCT p.user_id AS subject_id, o.user_id AS receiver_id,
       COALESCE(rp.hide_last_seen, false)::boolean AS receiver_hides
FROM conversation_participants p
JOIN conversation_participants o ON o.conversation_id = p.conversation_id AND o.user_id <> p.user_id
    -- A group's former members share nothing with it any more.
    AND p.left_at IS NULL AND o.left_at IS NULL
LEFT JOIN user_presence rp ON rp.user_id = o.user_id
WHERE p.user_id = ANY(@user_ids::bigint[])
  AND NOT EXISTS (SELECT 1 FROM user_presence sp WHERE sp.user_id = p.user_id AND sp.hide_last_seen)
  AND NOT EXISTS (SELECT 1 FROM blocks b WHERE (b.blocker_id = p.user_id AND b.blocked_id = o.user_id)
                                            OR (b.blocker_id = o.user_id AND b.blocked_id = p.user_id));

-- name: ListSharedPartners :many
-- Of the given users, those who share a conversation with user_id.
SELECT DISTINCT o.user_id FROM conversation_participants p
JOIN conversation_participants o ON o.conversation_id = p.conversation_id AND o.user_id <> p.user_id
    -- A group's former members share nothing with it any more.
    AND p.left_at IS NULL AND o.left_at IS NULL
WHERE p.user_id = @user_id AND o.user_id = ANY(@user_ids::bigint[]);
