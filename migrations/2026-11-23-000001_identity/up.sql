-- Accounts: customers, refresh-token families, addresses.

CREATE TABLE customers (
    id            UUID PRIMARY KEY,
    email         TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    first_name    TEXT NOT NULL CHECK (length(first_name) BETWEEN 1 AND 100),
    last_name     TEXT NOT NULL CHECK (length(last_name) BETWEEN 1 AND 100),
    phone         TEXT NULL,
    role          TEXT NOT NULL CHECK (role IN ('CUSTOMER', 'ADMIN')),
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    -- The domain normalises e-mails to lower case; the constraint keeps it that way.
    CONSTRAINT customers_email_key UNIQUE (email),
    CONSTRAINT customers_email_lower CHECK (email = lower(email))
);

CREATE INDEX customers_role_id_idx ON customers (role, id DESC);

-- Refresh tokens are stored only as SHA-256 hashes. A family is one login and its rotations.
CREATE TABLE refresh_tokens (
    id          UUID PRIMARY KEY,
    family_id   UUID NOT NULL,
    customer_id UUID NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    token_hash  BYTEA NOT NULL CHECK (octet_length(token_hash) = 32),
    created_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    rotated_at  TIMESTAMPTZ NULL,
    revoked_at  TIMESTAMPTZ NULL,
    CONSTRAINT refresh_tokens_token_hash_key UNIQUE (token_hash)
);

CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_customer_idx ON refresh_tokens (customer_id);

CREATE TABLE addresses (
    id          UUID PRIMARY KEY,
    customer_id UUID NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    full_name   TEXT NOT NULL,
    line1       TEXT NOT NULL,
    line2       TEXT NULL,
    city        TEXT NOT NULL,
    state       TEXT NULL,
    postal_code TEXT NOT NULL,
    country     CHAR(2) NOT NULL CHECK (country ~ '^[A-Z]{2}$'),
    phone       TEXT NULL,
    is_default  BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);

CREATE INDEX addresses_customer_idx ON addresses (customer_id, created_at);
-- At most one default address per customer.
CREATE UNIQUE INDEX addresses_one_default_idx ON addresses (customer_id) WHERE is_default;
