-- Campaigns, their inventory, and the persisted claims (SPEC.md "PostgreSQL").

CREATE TABLE campaign (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    start_time timestamptz NOT NULL,
    end_time   timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (end_time > start_time)
);

CREATE TABLE campaign_inventory (
    campaign_id  bigint NOT NULL REFERENCES campaign (id),
    amount       bigint NOT NULL CHECK (amount BETWEEN 1 AND 1000000000),
    total_count  bigint NOT NULL CHECK (total_count BETWEEN 1 AND 100000000),
    opened_count bigint NOT NULL DEFAULT 0 CHECK (opened_count BETWEEN 0 AND total_count),
    PRIMARY KEY (campaign_id, amount)
);

-- One row per (campaign, user): the primary key is what makes a redelivered
-- event a no-op. The foreign key keeps every claim on a real inventory row;
-- the consumer checks it before writing, so it never fails a batch.
CREATE TABLE claim_log (
    campaign_id  bigint      NOT NULL,
    user_id      text        NOT NULL,
    amount       bigint      NOT NULL,
    claimed_at   timestamptz NOT NULL,
    persisted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (campaign_id, user_id),
    FOREIGN KEY (campaign_id, amount) REFERENCES campaign_inventory (campaign_id, amount)
);

-- Campaigns still open or recently ended: the api loads them into Redis on
-- boot and the reconciler walks them.
CREATE INDEX campaign_end_time_idx ON campaign (end_time);
