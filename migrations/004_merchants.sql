-- Merchants apart (docs/security.md, "Merchants and operators"): merchants,
-- their tokens (stored hashed), the owner of each campaign, and the merchant
-- and token behind each action.

CREATE TABLE merchant (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text        NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,63}$'),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- A merchant's bearer tokens. hash is SHA-256 of the secret (random 32 bytes,
-- shown once at creation); the secret itself is never stored. A revoked token
-- stays, with revoked_at, for the audit (campaign_action.token_id).
CREATE TABLE merchant_token (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    merchant_id bigint      NOT NULL REFERENCES merchant (id),
    hash        bytea       NOT NULL UNIQUE CHECK (length(hash) = 32),
    role        text        NOT NULL CHECK (role IN ('full', 'read')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX merchant_token_merchant_idx ON merchant_token (merchant_id, id);

-- One row: bumped by every transaction that adds or revokes a token. Its
-- row lock orders those writers, and every api compares it (one tiny query
-- every MERCHANT_TOKEN_REFRESH) with the version it holds in memory, reading
-- the active tokens again, in the same statement, only when it moved.
CREATE TABLE merchant_token_version (
    one     boolean PRIMARY KEY DEFAULT true CHECK (one),
    version bigint  NOT NULL
);
INSERT INTO merchant_token_version (one, version) VALUES (true, 1);

-- The campaign's owner: the merchant whose token created it. NULL is the
-- operator's (created with an ADMIN_TOKEN entry): every campaign made before
-- this migration is the operator's, seen by operators only, until an
-- operator hands it over (UPDATE campaign SET merchant_id = ...; see
-- docs/operations.md, "Merchants").
ALTER TABLE campaign ADD COLUMN merchant_id bigint REFERENCES merchant (id);
CREATE INDEX campaign_merchant_idx ON campaign (merchant_id, id);

-- Who acted: the merchant and the token (NULL for an operator's action,
-- whose ADMIN_TOKEN entry name is in actor as before).
ALTER TABLE campaign_action ADD COLUMN merchant_id bigint REFERENCES merchant (id);
ALTER TABLE campaign_action ADD COLUMN token_id bigint REFERENCES merchant_token (id);
ALTER TABLE campaign_action ADD CONSTRAINT campaign_action_token_of_merchant
    CHECK ((merchant_id IS NULL) = (token_id IS NULL));
CREATE INDEX campaign_action_merchant_idx ON campaign_action (merchant_id, id) WHERE merchant_id IS NOT NULL;
