-- The merchant's side: ending a campaign early, adding stock, and the audit
-- of every merchant action (README, "Merchant routes").

-- Ending a campaign that has not started empties its window (start = end),
-- so the window may now be empty; POST /campaign still requires end > start.
ALTER TABLE campaign DROP CONSTRAINT campaign_check;
ALTER TABLE campaign ADD CONSTRAINT campaign_window CHECK (end_time >= start_time);
-- When a merchant ended it early; null while it runs its whole window.
ALTER TABLE campaign ADD COLUMN ended_at timestamptz;

-- One row per merchant action: who (the token's name), when, what was asked
-- and what it did. An added stock is also the record that makes a retried
-- request add once (idempotency_key, in the transaction that changed the
-- inventory) and the pending work the api finishes when its Redis step did
-- not run (applied_at null).
CREATE TABLE campaign_action (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    campaign_id     bigint      NOT NULL REFERENCES campaign (id) ON DELETE CASCADE,
    kind            text        NOT NULL CHECK (kind IN ('create', 'end', 'stock')),
    actor           text        NOT NULL CHECK (char_length(actor) BETWEEN 1 AND 64),
    at              timestamptz NOT NULL DEFAULT now(),
    request         jsonb       NOT NULL,
    result          jsonb       NOT NULL,
    idempotency_key text        CHECK (char_length(idempotency_key) BETWEEN 1 AND 255),
    amount          bigint,
    count           bigint,
    applied_at      timestamptz,
    CHECK ((kind = 'stock') = (amount IS NOT NULL AND count IS NOT NULL)),
    UNIQUE (campaign_id, idempotency_key)
);

CREATE INDEX campaign_action_campaign_idx ON campaign_action (campaign_id, id);
CREATE INDEX campaign_action_pending_idx ON campaign_action (at) WHERE kind = 'stock' AND applied_at IS NULL;
CREATE INDEX campaign_ended_at_idx ON campaign (ended_at) WHERE ended_at IS NOT NULL;
