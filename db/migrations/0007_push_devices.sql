-- Push devices: the app's registration for push notifications. A token
-- belongs to one user at a time: registering it again, for whoever signs in
-- on that phone, moves it.
CREATE TABLE push_devices (
    token         text PRIMARY KEY,
    user_id       bigint NOT NULL CHECK (user_id > 0),
    platform      text NOT NULL CHECK (platform IN ('ios', 'android', 'expo')),
    app_version   text,
    registered_at timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX push_devices_user_idx ON push_devices (user_id);

-- What the notifier pushed: one row per message and device token, claimed
-- before the send, so a redelivered or replayed message is not pushed to a
-- device twice. A send that failed for a reason worth retrying gives its
-- claim back. ticket_id is the Expo push ticket whose receipt is still to
-- be checked (NULL once checked, or for other providers).
CREATE TABLE push_deliveries (
    message_id uuid NOT NULL,
    token      text NOT NULL,
    user_id    bigint NOT NULL,
    pushed_at  timestamptz NOT NULL DEFAULT now(),
    ticket_id  text,
    PRIMARY KEY (message_id, token)
);
CREATE INDEX push_deliveries_pushed_idx ON push_deliveries (pushed_at);
CREATE INDEX push_deliveries_ticket_idx ON push_deliveries (pushed_at) WHERE ticket_id IS NOT NULL;
