-- A payment's own id in the center's export (the CSV's optional payment_id column). Two payments
-- alike in everything else (same account, provider, day, amount and channel: a resident paying
-- for two months at once, say) are two payments when their ids differ; rows without an id are
-- one payment if alike, as before, so that a file imported twice adds nothing.
CREATE TABLE payments_new (
    id           INTEGER PRIMARY KEY,
    account      TEXT NOT NULL REFERENCES accounts(number),
    provider_id  INTEGER NOT NULL REFERENCES providers(id),
    amount       INTEGER NOT NULL,             -- kopecks
    paid_at      TEXT NOT NULL,                -- YYYY-MM-DD
    channel      TEXT NOT NULL DEFAULT '',
    reference    TEXT NOT NULL DEFAULT ''      -- payment_id from the CSV; '' when it had none
);
INSERT INTO payments_new (id, account, provider_id, amount, paid_at, channel)
    SELECT id, account, provider_id, amount, paid_at, channel FROM payments;
DROP TABLE payments;
ALTER TABLE payments_new RENAME TO payments;
CREATE INDEX payments_by_account ON payments(account, paid_at);
CREATE UNIQUE INDEX payments_alike ON payments(account, provider_id, paid_at, amount, channel)
    WHERE reference = '';
CREATE UNIQUE INDEX payments_by_reference ON payments(reference) WHERE reference != '';
