-- Bucketed campaigns: the stock of one campaign split over that many Redis
-- hash tags (README, "Bucketed campaigns"). 1 is the layout of one tag.
ALTER TABLE campaign ADD COLUMN buckets smallint NOT NULL DEFAULT 1 CHECK (buckets BETWEEN 1 AND 64);
