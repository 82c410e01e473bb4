-- Reference data from the settlement center's exports.
CREATE TABLE providers (
    id           INTEGER PRIMARY KEY,          -- provider_id from the CSV
    name         TEXT NOT NULL,
    inn          TEXT NOT NULL DEFAULT '',
    service_kind TEXT NOT NULL DEFAULT ''
);

CREATE TABLE accounts (
    number       TEXT PRIMARY KEY,             -- personal account (лицевой счёт), digits only
    receipt_code TEXT NOT NULL,                -- the code printed on the paper receipt
    address      TEXT NOT NULL DEFAULT '',
    holder       TEXT NOT NULL DEFAULT ''
);

CREATE TABLE charges (
    account      TEXT NOT NULL REFERENCES accounts(number),
    provider_id  INTEGER NOT NULL REFERENCES providers(id),
    service      TEXT NOT NULL,
    period       TEXT NOT NULL,                -- YYYY-MM
    amount       INTEGER NOT NULL,             -- kopecks
    PRIMARY KEY (account, provider_id, service, period)
) WITHOUT ROWID;

CREATE TABLE payments (
    id           INTEGER PRIMARY KEY,
    account      TEXT NOT NULL REFERENCES accounts(number),
    provider_id  INTEGER NOT NULL REFERENCES providers(id),
    amount       INTEGER NOT NULL,             -- kopecks
    paid_at      TEXT NOT NULL,                -- YYYY-MM-DD
    channel      TEXT NOT NULL DEFAULT '',
    UNIQUE (account, provider_id, paid_at, amount, channel)
);
CREATE INDEX payments_by_account ON payments(account, paid_at);

-- Residents and what they may see.
CREATE TABLE residents (
    id                   INTEGER PRIMARY KEY,
    phone                TEXT NOT NULL UNIQUE, -- E.164
    card_number          TEXT NOT NULL UNIQUE,
    password_hash        TEXT,
    must_change_password INTEGER NOT NULL DEFAULT 1,
    verified_at          TEXT,
    reminders            INTEGER NOT NULL DEFAULT 1,
    created_at           TEXT NOT NULL
);

CREATE TABLE resident_accounts (
    resident_id  INTEGER NOT NULL REFERENCES residents(id),
    account      TEXT NOT NULL REFERENCES accounts(number),
    linked_at    TEXT NOT NULL,
    PRIMARY KEY (resident_id, account)
) WITHOUT ROWID;

-- One-time codes: hashed, expiring, attempt-limited, single use; one live code per phone and purpose.
CREATE TABLE codes (
    phone        TEXT NOT NULL,
    purpose      TEXT NOT NULL,
    code_hash    TEXT NOT NULL,
    payload      TEXT NOT NULL DEFAULT '',
    expires_at   REAL NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    created_at   REAL NOT NULL,
    PRIMARY KEY (phone, purpose)
) WITHOUT ROWID;

-- Sliding-window rate limits: one row per counted event.
CREATE TABLE rate_events (
    key          TEXT NOT NULL,
    at           REAL NOT NULL
);
CREATE INDEX rate_events_by_key ON rate_events(key, at);

-- Inbound texts, stored before the SMSC is answered.
CREATE TABLE inbox (
    id           INTEGER PRIMARY KEY,
    phone        TEXT NOT NULL,                -- E.164 when it parses, else the raw address
    text         TEXT NOT NULL,
    data_coding  INTEGER NOT NULL DEFAULT 0,
    raw          BLOB,                         -- user data that is not text
    channel      TEXT NOT NULL DEFAULT 'sms',
    received_at  REAL NOT NULL,
    text_hash    TEXT NOT NULL DEFAULT '',
    acked        INTEGER NOT NULL DEFAULT 0,   -- deliver_sm_resp sent
    state        TEXT NOT NULL DEFAULT 'new',  -- new, done, failed
    handler      TEXT NOT NULL DEFAULT '',
    extra        TEXT NOT NULL DEFAULT ''      -- transport details (USSD operation, session info)
);
CREATE INDEX inbox_unacked ON inbox(phone, text_hash) WHERE acked = 0;
CREATE INDEX inbox_pending ON inbox(state) WHERE state = 'new';
CREATE INDEX inbox_by_phone ON inbox(phone, received_at);

-- Everything we send: written before it is submitted.
CREATE TABLE outbox (
    id           INTEGER PRIMARY KEY,
    request_key  TEXT NOT NULL UNIQUE,         -- retries of one request map to one row
    phone        TEXT NOT NULL,
    text         TEXT NOT NULL,
    kind         TEXT NOT NULL DEFAULT 'reply',
    state        TEXT NOT NULL DEFAULT 'queued', -- queued, submitted, delivered, failed, expired
    parts        INTEGER NOT NULL DEFAULT 1,
    created_at   REAL NOT NULL,
    submitted_at REAL,
    done_at      REAL,
    error        TEXT NOT NULL DEFAULT '',
    extra        TEXT NOT NULL DEFAULT ''      -- transport options (USSD operation, session info)
);
CREATE INDEX outbox_pending ON outbox(state, id) WHERE state = 'queued';
CREATE INDEX outbox_by_phone ON outbox(phone, created_at);

CREATE TABLE outbox_parts (
    outbox_id    INTEGER NOT NULL REFERENCES outbox(id),
    part_no      INTEGER NOT NULL,
    smsc_id      TEXT,                         -- as the SMSC gave it
    state        TEXT NOT NULL DEFAULT 'queued',
    submitted_at REAL,
    done_at      REAL,
    PRIMARY KEY (outbox_id, part_no)
) WITHOUT ROWID;
-- Each SMSC id under every reading a receipt may use (hex, decimal, no leading zeros).
CREATE TABLE part_keys (
    smsc_key     TEXT NOT NULL,
    outbox_id    INTEGER NOT NULL,
    part_no      INTEGER NOT NULL,
    PRIMARY KEY (smsc_key, outbox_id, part_no)
) WITHOUT ROWID;

-- Parts of concatenated inbound texts, kept until the whole text is there.
CREATE TABLE inbox_parts (
    phone        TEXT NOT NULL,
    reference    INTEGER NOT NULL,
    total        INTEGER NOT NULL,
    number       INTEGER NOT NULL,
    text         TEXT NOT NULL,
    data_coding  INTEGER NOT NULL,
    received_at  REAL NOT NULL,
    PRIMARY KEY (phone, reference, total, number)
) WITHOUT ROWID;

CREATE TABLE receipts (
    id           INTEGER PRIMARY KEY,
    smsc_id      TEXT NOT NULL DEFAULT '',
    stat         TEXT NOT NULL DEFAULT '',
    err          TEXT NOT NULL DEFAULT '',
    body         TEXT NOT NULL DEFAULT '',
    outbox_id    INTEGER,
    received_at  REAL NOT NULL
);

CREATE TABLE meta (
    key          TEXT PRIMARY KEY,
    value        TEXT NOT NULL
);
