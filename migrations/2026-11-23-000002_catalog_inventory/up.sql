-- Catalog (products, search) and inventory (stock levels, movements, reservations).

CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE products (
    id             UUID PRIMARY KEY,
    sku            TEXT NOT NULL,
    name           TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description    TEXT NULL CHECK (length(description) <= 5000),
    price_amount   BIGINT NOT NULL CHECK (price_amount > 0),
    price_currency CHAR(3) NOT NULL,
    category       TEXT NULL CHECK (length(category) BETWEEN 1 AND 100),
    status         TEXT NOT NULL CHECK (status IN ('ACTIVE', 'ARCHIVED')),
    created_at     TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL,
    -- Full-text search: name weighs most, then category, then description.
    search_vector  TSVECTOR GENERATED ALWAYS AS (
        setweight(to_tsvector('english', name), 'A') ||
        setweight(to_tsvector('english', coalesce(category, '')), 'B') ||
        setweight(to_tsvector('english', coalesce(description, '')), 'C')
    ) STORED,
    -- Typo and prefix tolerance: trigram similarity over name and category.
    search_text    TEXT GENERATED ALWAYS AS (lower(name || ' ' || coalesce(category, ''))) STORED,
    CONSTRAINT products_sku_key UNIQUE (sku)
);

CREATE INDEX products_search_vector_idx ON products USING GIN (search_vector);
CREATE INDEX products_search_text_trgm_idx ON products USING GIN (search_text gin_trgm_ops);
CREATE INDEX products_active_id_idx ON products (id DESC) WHERE status = 'ACTIVE';
CREATE INDEX products_active_price_idx ON products (price_amount, id) WHERE status = 'ACTIVE';
CREATE INDEX products_category_idx ON products (lower(category)) WHERE status = 'ACTIVE';

CREATE TABLE stock_levels (
    product_id          UUID PRIMARY KEY REFERENCES products (id),
    on_hand             INTEGER NOT NULL CHECK (on_hand >= 0),
    reserved            INTEGER NOT NULL CHECK (reserved >= 0),
    low_stock_threshold INTEGER NOT NULL DEFAULT 5 CHECK (low_stock_threshold >= 0),
    updated_at          TIMESTAMPTZ NOT NULL,
    -- The last line of defence against overselling.
    CONSTRAINT stock_levels_reserved_within_on_hand CHECK (reserved <= on_hand)
);

CREATE INDEX stock_levels_low_idx ON stock_levels ((on_hand - reserved), product_id);

-- Append-only ledger of every change to on-hand or reserved stock.
CREATE TABLE stock_movements (
    id             UUID PRIMARY KEY,
    product_id     UUID NOT NULL REFERENCES products (id),
    kind           TEXT NOT NULL CHECK (kind IN ('ADJUST_ADD', 'ADJUST_SUBTRACT', 'ADJUST_SET', 'INITIAL',
                                                'RESERVE', 'CONFIRM', 'RELEASE', 'EXPIRE')),
    on_hand_delta  INTEGER NOT NULL,
    reserved_delta INTEGER NOT NULL,
    on_hand_after  INTEGER NOT NULL,
    reserved_after INTEGER NOT NULL,
    reason         TEXT NULL,
    actor_id       UUID NULL,
    reference      TEXT NULL,
    created_at     TIMESTAMPTZ NOT NULL
);

CREATE INDEX stock_movements_product_idx ON stock_movements (product_id, created_at);

CREATE RULE stock_movements_no_update AS ON UPDATE TO stock_movements DO INSTEAD NOTHING;
CREATE RULE stock_movements_no_delete AS ON DELETE TO stock_movements DO INSTEAD NOTHING;

-- One reservation per order; its lines hold the quantities.
CREATE TABLE reservations (
    order_id   UUID PRIMARY KEY,
    status     TEXT NOT NULL CHECK (status IN ('ACTIVE', 'CONFIRMED', 'RELEASED', 'EXPIRED')),
    expires_at TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

CREATE INDEX reservations_active_expiry_idx ON reservations (expires_at) WHERE status = 'ACTIVE';

CREATE TABLE reservation_lines (
    order_id   UUID NOT NULL REFERENCES reservations (order_id),
    product_id UUID NOT NULL REFERENCES products (id),
    quantity   INTEGER NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, product_id)
);
