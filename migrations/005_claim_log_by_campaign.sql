-- claim_log, one partition per campaign (docs/design.md, "claim_log"): a
-- campaign's claims are written into, read from and retired with a table of
-- their own, so the claims of earlier campaigns cost today's nothing, and an
-- ended campaign's claims are detached and dropped without a lock that stops
-- the writer (consumer archive, docs/operations.md).
--
-- What the old table had and this one has not:
-- * The foreign key to campaign_inventory: its row-level trigger cost two
--   thirds of the COPY's CPU (BenchmarkWriter: 19 µs a row with it, 6
--   without). Its invariant, that a claim's amount is one of its campaign's
--   inventory, holds without it: the writer checks every event's amount
--   against the inventory before writing (pipeline/writer/inventory.go), and
--   the statement that adds a batch to opened_count refuses a batch with an
--   amount it cannot count (internal/postgres/claims.go).
-- * user_id as text: varchar(128) holds every user id (1-128 bytes) and
--   leaves a partition without a TOAST table (two relations a campaign, not
--   four: fewer files, catalog rows and locks); COLLATE "C" orders by bytes,
--   the same on every server, an order no upgrade of the C library can
--   change under a built index.

-- The archive of a campaign's claims (consumer archive): from started_at
-- its claims are no longer served (the payout routes answer ARCHIVED) and
-- its partition is detached; from archived_at they are in the file at
-- location (claims rows, sha256 the file's), and the detached table is kept
-- as claim_archived_<id> until dropped.
CREATE TABLE claim_archive (
    campaign_id bigint      PRIMARY KEY REFERENCES campaign (id),
    started_at  timestamptz NOT NULL DEFAULT now(),
    archived_at timestamptz,
    claims      bigint      CHECK (claims >= 0),
    sha256      text        CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    location    text        CHECK (char_length(location) BETWEEN 1 AND 4096),
    dropped     boolean     NOT NULL DEFAULT false,
    CHECK ((archived_at IS NULL) = (claims IS NULL) AND (archived_at IS NULL) = (sha256 IS NULL)
           AND (archived_at IS NULL) = (location IS NULL) AND (archived_at IS NOT NULL OR NOT dropped))
);

ALTER TABLE claim_log RENAME TO claim_log_unpartitioned;
ALTER INDEX claim_log_pkey RENAME TO claim_log_unpartitioned_pkey;

CREATE TABLE claim_log (
    campaign_id  bigint       NOT NULL,
    user_id      varchar(128) COLLATE "C" NOT NULL,
    amount       bigint       NOT NULL,
    claimed_at   timestamptz  NOT NULL,
    persisted_at timestamptz  NOT NULL DEFAULT now()
) PARTITION BY LIST (campaign_id);

-- claim_counted is how the statements that add a batch of claims to
-- opened_count keep the invariant the foreign key held: counted is the
-- number of (campaign, amount) groups of the batch that found their
-- inventory row, wanted the number of groups. A group without one is a
-- claim on an amount its campaign does not have: the statement fails with
-- the foreign key's SQLSTATE and its transaction (the batch's rows too) is
-- rolled back. Once a batch, not once a row.
CREATE FUNCTION claim_counted(counted bigint, wanted bigint) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    IF counted <> wanted THEN
        RAISE EXCEPTION 'a claim''s amount is not in its campaign''s inventory (% of % campaign amounts found)', counted, wanted
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN counted;
END
$$;

-- claim_log_partition makes the partition of campaign id: a table of its
-- own first, then attached. Attaching takes a SHARE UPDATE EXCLUSIVE lock
-- on claim_log, which writers (ROW EXCLUSIVE) and readers do not wait for;
-- CREATE TABLE ... PARTITION OF would take ACCESS EXCLUSIVE, and a
-- campaign's creation would wait for every batch in flight and stop the
-- ones behind it. Attaching builds the partition's primary key (empty: at
-- once).
CREATE FUNCTION claim_log_partition(id bigint) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('CREATE TABLE %I (LIKE claim_log INCLUDING DEFAULTS)', 'claim_log_' || id);
    EXECUTE format('ALTER TABLE claim_log ATTACH PARTITION %I FOR VALUES IN (%s)', 'claim_log_' || id, id);
END
$$;

-- Every campaign that exists gets its partition, and its claims are moved
-- there; the primary key is built after the rows are in (a sort per
-- partition, faster than growing each index row by row). The migration runs
-- in one transaction: it holds about two locks per campaign until it
-- commits (past max_locks_per_transaction × max_connections it fails and
-- changes nothing; docs/operations.md).
SELECT claim_log_partition(id) FROM campaign ORDER BY id;
INSERT INTO claim_log (campaign_id, user_id, amount, claimed_at, persisted_at)
    SELECT campaign_id, user_id, amount, claimed_at, persisted_at FROM claim_log_unpartitioned;
ALTER TABLE claim_log ADD PRIMARY KEY (campaign_id, user_id);
DROP TABLE claim_log_unpartitioned;

-- A campaign's partition is made in the transaction that inserts it,
-- whoever inserts it (the api, the tests' fixtures, an operator), so no
-- claim can arrive for a campaign without one.
CREATE FUNCTION campaign_claim_partition() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM claim_log_partition(NEW.id);
    RETURN NULL;
END
$$;
CREATE TRIGGER campaign_claim_partition AFTER INSERT ON campaign
    FOR EACH ROW EXECUTE FUNCTION campaign_claim_partition();
