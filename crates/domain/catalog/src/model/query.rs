use ecom_kernel::BoundedText;

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

impl ProductSort {
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
