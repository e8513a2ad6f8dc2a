-- Each user's feed has an epoch: positions mean something only within it.
-- A head is created with a random epoch, so a feed rebuilt from nothing (a
-- replay into an emptied database) numbers in a new epoch; after a restore
-- from a backup, whose heads are older than what clients saw, an operator
-- gives every feed a new epoch (`chat sync new-epoch`). A client that
-- holds a position of another epoch is told to reload rather than be
-- answered from a numbering that is not the one it saw. Epochs stay within
-- 2^53 - 1, exact in JavaScript.
ALTER TABLE user_feed_heads
    ADD COLUMN epoch bigint NOT NULL DEFAULT (1 + floor(random() * 9007199254740990))::bigint
    CHECK (epoch BETWEEN 1 AND 9007199254740991);
