//! The demo catalog: about fifty products in ten categories, with stock, so that a fresh
//! `just run` shows a living shop. Idempotent: products whose SKU exists are left alone.

use ecom_catalog::model::{NewProduct, Sku};
use ecom_catalog::{CatalogError, CatalogService};
use ecom_kernel::{BoundedText, CustomerId, Money};

/// (sku, name, category, price in cents, stock, description)
const DEMO: &[(&str, &str, &str, i64, u32, &str)] = &[
    (
        "AUD-001",
        "Wireless Noise-Cancelling Headphones",
        "audio",
        24900,
        40,
        "Over-ear Bluetooth headphones with active noise cancelling and 30-hour battery.",
    ),
    (
        "AUD-002",
        "True Wireless Earbuds",
        "audio",
        12900,
        80,
        "Compact earbuds with charging case, sweat resistant, touch controls.",
    ),
    (
        "AUD-003",
        "Portable Bluetooth Speaker",
        "audio",
        7900,
        60,
        "Waterproof speaker with deep bass and 12 hours of playtime.",
    ),
    (
        "AUD-004",
        "Studio Monitor Headphones",
        "audio",
        15900,
        25,
        "Closed-back wired headphones for mixing and recording.",
    ),
    (
        "AUD-005",
        "Smart Soundbar",
        "audio",
        39900,
        15,
        "Dolby Atmos soundbar with voice assistant and wireless subwoofer.",
    ),
    (
        "CMP-001",
        "Ultrabook 14-inch Laptop",
        "computing",
        129900,
        12,
        "Thin and light laptop, 16 GB RAM, 512 GB SSD, all-day battery.",
    ),
    (
        "CMP-002",
        "Mechanical Keyboard",
        "computing",
        10900,
        50,
        "Tenkeyless mechanical keyboard with hot-swappable switches and RGB.",
    ),
    (
        "CMP-003",
        "Wireless Ergonomic Mouse",
        "computing",
        6900,
        70,
        "Vertical mouse that reduces wrist strain, USB-C rechargeable.",
    ),
    (
        "CMP-004",
        "27-inch 4K Monitor",
        "computing",
        42900,
        18,
        "IPS display with USB-C power delivery and height-adjustable stand.",
    ),
    (
        "CMP-005",
        "USB-C Docking Station",
        "computing",
        18900,
        30,
        "Dual display dock with Ethernet, card reader and 100 W charging.",
    ),
    (
        "PHN-001",
        "Smartphone Pro 256 GB",
        "phones",
        99900,
        20,
        "Flagship phone with triple camera and 120 Hz OLED display.",
    ),
    ("PHN-002", "Budget Smartphone 128 GB", "phones", 24900, 45, "Reliable everyday phone with two-day battery life."),
    ("PHN-003", "Fast Wireless Charger", "phones", 3900, 120, "15 W Qi charging pad with cooling fan."),
    ("PHN-004", "Rugged Phone Case", "phones", 2900, 150, "Drop-tested case with raised edges and kickstand."),
    ("PHN-005", "Power Bank 20000 mAh", "phones", 4900, 90, "High capacity battery pack with USB-C PD fast charging."),
    ("HOM-001", "Robot Vacuum Cleaner", "home", 34900, 14, "Self-emptying robot vacuum with lidar mapping."),
    ("HOM-002", "Smart LED Bulb Pack", "home", 3900, 200, "Four colour bulbs controllable by app and voice."),
    (
        "HOM-003",
        "Air Purifier HEPA",
        "home",
        19900,
        22,
        "True HEPA filter air purifier for rooms up to 40 square metres.",
    ),
    ("HOM-004", "Memory Foam Pillow", "home", 5900, 75, "Contoured pillow with cooling gel layer."),
    ("HOM-005", "Weighted Blanket", "home", 8900, 35, "7 kg weighted blanket with breathable cotton cover."),
    ("KIT-001", "Espresso Machine", "kitchen", 49900, 10, "15-bar espresso maker with steam wand for latte art."),
    ("KIT-002", "Cast Iron Skillet", "kitchen", 3900, 60, "Pre-seasoned 26 cm skillet for stovetop and oven."),
    ("KIT-003", "Chef's Knife 20 cm", "kitchen", 8900, 40, "Forged stainless steel chef's knife with full tang."),
    (
        "KIT-004",
        "Electric Kettle",
        "kitchen",
        4900,
        55,
        "1.7 litre kettle with temperature control for tea and coffee.",
    ),
    ("KIT-005", "High-Speed Blender", "kitchen", 17900, 20, "1400 W blender for smoothies, soups and nut butters."),
    (
        "OUT-001",
        "Two-Person Camping Tent",
        "outdoor",
        15900,
        16,
        "Lightweight backpacking tent, waterproof, sets up in minutes.",
    ),
    (
        "OUT-002",
        "Insulated Water Bottle",
        "outdoor",
        2900,
        180,
        "Stainless steel bottle keeps drinks cold for 24 hours.",
    ),
    (
        "OUT-003",
        "Hiking Backpack 40 L",
        "outdoor",
        11900,
        28,
        "Ventilated back panel, rain cover and hip belt pockets.",
    ),
    ("OUT-004", "LED Headlamp", "outdoor", 2400, 95, "Rechargeable 400 lumen headlamp with red light mode."),
    (
        "OUT-005",
        "Down Sleeping Bag",
        "outdoor",
        22900,
        3,
        "Three-season down sleeping bag rated to minus five degrees.",
    ),
    (
        "BOK-001",
        "The Pragmatic Programmer",
        "books",
        4500,
        40,
        "Classic guide to software craftsmanship, 20th anniversary edition.",
    ),
    (
        "BOK-002",
        "Designing Data-Intensive Applications",
        "books",
        5200,
        35,
        "The big ideas behind reliable, scalable and maintainable systems.",
    ),
    (
        "BOK-003",
        "The Rust Programming Language",
        "books",
        3900,
        50,
        "The official book on Rust, covering ownership, traits and async.",
    ),
    (
        "BOK-004",
        "Cooking for Engineers",
        "books",
        2900,
        20,
        "Recipes explained with diagrams and the science behind them.",
    ),
    ("BOK-005", "A Field Guide to Birds", "books", 2500, 4, "Illustrated guide to more than 800 species."),
    ("TOY-001", "Building Blocks Starter Set", "toys", 4900, 60, "500 interlocking bricks in 30 colours."),
    ("TOY-002", "Remote Control Car", "toys", 5900, 30, "Off-road RC car with rechargeable battery, 25 km/h."),
    ("TOY-003", "Wooden Puzzle Set", "toys", 1900, 85, "Three puzzles for ages three and up."),
    (
        "TOY-004",
        "Board Game Strategy Classic",
        "toys",
        3900,
        45,
        "Trade, build and settle: a modern classic for 3 to 4 players.",
    ),
    ("TOY-005", "Plush Teddy Bear", "toys", 2200, 0, "Soft 40 cm teddy bear, machine washable."),
    ("FIT-001", "Adjustable Dumbbells", "fitness", 29900, 12, "Pair of dumbbells adjustable from 2 to 24 kg."),
    ("FIT-002", "Yoga Mat", "fitness", 3500, 110, "6 mm non-slip mat with carrying strap."),
    (
        "FIT-003",
        "Fitness Tracker Watch",
        "fitness",
        14900,
        38,
        "Heart rate, sleep and GPS tracking with 10-day battery.",
    ),
    ("FIT-004", "Resistance Bands Set", "fitness", 2900, 140, "Five bands with handles, door anchor and bag."),
    ("FIT-005", "Foam Roller", "fitness", 2700, 65, "High-density roller for muscle recovery."),
    (
        "OFF-001",
        "Ergonomic Office Chair",
        "office",
        32900,
        9,
        "Mesh chair with lumbar support and adjustable armrests.",
    ),
    ("OFF-002", "Standing Desk Frame", "office", 45900, 7, "Dual-motor electric frame with memory presets."),
    (
        "OFF-003",
        "Desk Lamp with Wireless Charger",
        "office",
        6900,
        42,
        "Dimmable LED lamp with built-in phone charger.",
    ),
    ("OFF-004", "Noise Masking Desk Fan", "office", 3900, 33, "Quiet USB fan with white noise mode."),
    ("OFF-005", "Fountain Pen", "office", 4900, 26, "Steel nib fountain pen with converter and ink cartridges."),
];

/// The seed acts as the system, not as a person.
const SYSTEM_ACTOR: CustomerId = CustomerId::from_uuid(uuid::Uuid::nil());

/// Creates every demo product that is missing; returns how many were created.
pub async fn seed_demo_catalog(catalog: &CatalogService) -> anyhow::Result<usize> {
    let mut created = 0;
    for (sku, name, category, cents, stock, description) in DEMO {
        let product = NewProduct {
            sku: Sku::parse(sku)?,
            name: BoundedText::parse(name, 200)?,
            description: Some(BoundedText::parse(description, 5000)?),
            price: Money::new(*cents, catalog.currency()),
            category: Some(BoundedText::parse(category, 100)?),
            initial_stock: *stock,
        };
        match catalog.create_product(SYSTEM_ACTOR, product).await {
            Ok(_) => created += 1,
            Err(CatalogError::SkuTaken(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(created)
}

/// How many products the demo catalog has.
pub fn demo_size() -> usize {
    DEMO.len()
}
