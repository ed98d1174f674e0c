use ecom_kernel::{BoundedText, Cursor};
use uuid::Uuid;

/// A search phrase: trimmed, 1 to 200 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchText(BoundedText);

impl SearchText {
    pub fn parse(raw: &str) -> Result<Self, ecom_kernel::TextError> {
        BoundedText::parse(raw, 200).map(Self)
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProductSort {
    /// Best match first; only with a search phrase.
    Relevance,
    PriceAsc,
    PriceDesc,
    Newest,
}

/// Where the next page of the product list starts, as its cursor tells it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ListPosition {
    /// Newest first: after this product.
    After(Uuid),
    /// By price: after this price and product.
    AfterPrice(i64, Uuid),
    /// By relevance: after this rank (exactly as the search computed it) and product, so that a
    /// product selling out or a new match between two pages neither skips nor repeats a result.
    AfterRank(f64, Uuid),
}

const PRICE_KEY: &str = "price:";
const RANK_KEY: &str = "rank:";

impl ProductSort {
    /// The cursor of the page that starts after product `id` (its `price`, and its `rank` in a
    /// search).
    pub fn cursor_after(self, id: Uuid, price: i64, rank: f64) -> Cursor {
        match self {
            ProductSort::Newest => Cursor::after_id(id),
            ProductSort::PriceAsc | ProductSort::PriceDesc => Cursor::after_key(format!("{PRICE_KEY}{price}"), id),
            // Rust writes the shortest text that reads back as the same number.
            ProductSort::Relevance => Cursor::after_key(format!("{RANK_KEY}{rank}"), id),
        }
    }

    /// Where `cursor` says the page starts, when it is a cursor this sort hands out. A cursor
    /// of another sort (a client that changed the sort, or started a search, while paging) or
    /// a forged one is `None`.
    pub fn position(self, cursor: &Cursor) -> Option<ListPosition> {
        match (self, cursor.key()) {
            (ProductSort::Newest, None) => Some(ListPosition::After(cursor.id())),
            (ProductSort::PriceAsc | ProductSort::PriceDesc, Some(key)) => {
                let price = key.strip_prefix(PRICE_KEY)?.parse::<i64>().ok()?;
                Some(ListPosition::AfterPrice(price, cursor.id()))
            }
            (ProductSort::Relevance, Some(key)) => {
                let rank = key.strip_prefix(RANK_KEY)?.parse::<f64>().ok().filter(|r| r.is_finite())?;
                Some(ListPosition::AfterRank(rank, cursor.id()))
            }
            _ => None,
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "relevance" => Some(ProductSort::Relevance),
            "price_asc" => Some(ProductSort::PriceAsc),
            "price_desc" => Some(ProductSort::PriceDesc),
            "newest" => Some(ProductSort::Newest),
            _ => None,
        }
    }
}

/// Filters of the public product list. Only ACTIVE products are ever listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductQuery {
    pub text: Option<SearchText>,
    pub category: Option<String>,
    pub min_price: Option<i64>,
    pub max_price: Option<i64>,
    pub in_stock: bool,
    pub sort: ProductSort,
}

impl ProductQuery {
    /// Relevance needs a phrase; without one the newest come first.
    pub fn effective_sort(&self) -> ProductSort {
        match (self.sort, &self.text) {
            (ProductSort::Relevance, None) => ProductSort::Newest,
            (sort, _) => sort,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_sort_reads_back_its_own_cursors_only() {
        let id = Uuid::now_v7();
        let sorts = [ProductSort::Newest, ProductSort::PriceAsc, ProductSort::PriceDesc, ProductSort::Relevance];
        for made in sorts {
            let cursor = Cursor::decode(&made.cursor_after(id, 1299, 0.75).encode()).unwrap();
            for read in sorts {
                let same_key = made == read
                    || matches!(
                        (made, read),
                        (
                            ProductSort::PriceAsc | ProductSort::PriceDesc,
                            ProductSort::PriceAsc | ProductSort::PriceDesc
                        )
                    );
                assert_eq!(read.position(&cursor).is_some(), same_key, "{made:?} read as {read:?}");
            }
        }
        assert_eq!(
            ProductSort::PriceAsc.position(&ProductSort::PriceDesc.cursor_after(id, 1299, 0.0)),
            Some(ListPosition::AfterPrice(1299, id))
        );
        // A rank reads back bit for bit, however many digits it takes.
        for rank in [0.0, 0.1 + 0.2, 1.0 / 3.0, 0.607_927_1_f32.into(), 1e-300] {
            let cursor = Cursor::decode(&ProductSort::Relevance.cursor_after(id, 0, rank).encode()).unwrap();
            assert_eq!(ProductSort::Relevance.position(&cursor), Some(ListPosition::AfterRank(rank, id)));
        }
        for forged in ["rank:NaN", "rank:inf", "rank:x", "offset:40"] {
            assert_eq!(ProductSort::Relevance.position(&Cursor::after_key(forged, id)), None, "{forged}");
        }
        assert_eq!(ProductSort::PriceAsc.position(&Cursor::after_key("price:x", id)), None, "forged");
    }
}
