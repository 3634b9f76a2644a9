#!/usr/bin/env python3
"""Generate a realistic, deterministic e-commerce catalog file for the cart engine.

The output is a JSON list of product bodies in the shape of ``PUT /v1/admin/products/{id}``
(see API.md, "Catalog"), each carrying its ``product_id``; every variant also carries
``"stock": n`` (units on hand). A product without ``variants`` has one implicit variant whose
id is the product id, and then carries a top-level ``"stock"``.

What the catalog contains:

* about 300 products (``--count``) across ten categories, with plausible names and short
  descriptions;
* prices as integer minor units (cents), ``{"amount": 1999, "currency": "USD"}``; about a
  quarter of the products also carry ``"prices"`` in EUR (some in GBP too), and a variant
  that overrides the USD price overrides those currencies as well;
* variants with ``attributes`` (size/color for shoes and apparel, storage/color for
  electronics, pack size for grocery, ...), ids unique across the whole catalog and matching
  ``[a-z0-9-]``, at most 64 characters;
* about 20% of products with no ``variants`` key at all;
* exactly three flash-sale variants (``"hold_ttl": 300``, small stock), one of them with
  ``"shards": 4``;
* a handful of sold-out variants (``"stock": 0``).

The same ``--seed`` and ``--count`` always give byte-identical output. Standard library only.

Usage::

    python examples/make_catalog.py                      # writes examples/catalog.json
    python examples/make_catalog.py --seed 7 --count 1000 --out /tmp/big.json
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from pathlib import Path
from typing import Any

DEFAULT_SEED = 20261122
DEFAULT_COUNT = 300
DEFAULT_OUT = Path(__file__).resolve().parent / "catalog.json"

MAX_ID = 64
FLASH_SALE_VARIANTS = 3
FLASH_SALE_TTL = 300
FLASH_SALE_STOCK = 50
FLASH_SALE_SHARDS = 4
SOLD_OUT_VARIANTS = 8

# Approximate conversion used for the extra currencies (a catalog's list prices, not FX).
EXTRA_CURRENCIES = {"EUR": 0.93, "GBP": 0.80}

Attrs = dict[str, str]
# A variant plan: (attributes, price multiplier over the product's base price; 1.0 = no override)
Plan = list[tuple[Attrs, float]]


# --------------------------------------------------------------------------------------------
# vocabulary

COLORS = ["black", "white", "navy", "grey", "red", "blue", "green", "olive", "sand", "burgundy",
          "charcoal", "teal", "coral", "cream", "mustard", "pink"]

# Each category: relative ``weight`` (share of products), SKU ``code``, the chance that a
# product which could have variants has none, and ``items``: (noun, description, variant kind,
# (low, high) USD price range in whole dollars). Kind "none" never has variants; the kinds
# "shoes" and "apparel" always do.
CATEGORIES: dict[str, dict[str, Any]] = {
    "shoes": {
        "weight": 11, "code": "SHO", "no_variants": 0.0,
        "brands": ["Stridewell", "Northpeak", "Kinetic", "Urbanloop", "Fieldcraft", "Aerostep",
                   "Marlow & Finch", "Tidewater"],
        "models": ["Terra", "Cloud Glide", "Summit", "Metro", "Tempo", "Ridge", "Harbor",
                   "Velocity", "Canyon", "Drift", "Pacer", "Nomad"],
        "items": [
            ("", "running shoe with a responsive foam midsole and a breathable mesh upper",
             "shoes", (70, 180)),
            ("Trail", "trail shoe with a lugged outsole and a rock plate for technical ground",
             "shoes", (90, 170)),
            ("Sneaker", "everyday sneaker with a cushioned footbed and a durable cupsole",
             "shoes", (55, 120)),
            ("Hiker", "waterproof hiking boot with a padded collar and a grippy lugged sole",
             "shoes", (110, 230)),
            ("Loafer", "leather loafer with a hand-stitched moc toe and a flexible rubber sole",
             "shoes", (80, 190)),
            ("Slip-On", "easy slip-on with elastic gores and a memory-foam insole",
             "shoes", (40, 85)),
            ("Court", "court shoe with a low-profile cupsole and a supportive heel counter",
             "shoes", (60, 130)),
        ],
        "numbered": True,
    },
    "apparel": {
        "weight": 12, "code": "APP", "no_variants": 0.0,
        "brands": ["Coastline", "Everlane Row", "Woolhaven", "Basecamp", "Linen & Lark",
                   "Heritage Mill", "Softform", "Outpost"],
        "models": ["Essential", "Classic", "Relaxed", "Organic", "Heavyweight", "Everyday",
                   "Slim", "Vintage", "Travel", "Weekend"],
        "items": [
            ("Crew Tee", "crew-neck tee in soft combed cotton that keeps its shape wash after wash",
             "apparel", (15, 40)),
            ("Hoodie", "pullover hoodie in brushed fleece with a kangaroo pocket",
             "apparel", (45, 95)),
            ("Chino", "pair of chinos in stretch twill with a tapered leg", "apparel", (45, 98)),
            ("Denim Jacket", "denim jacket with a classic trucker cut and corozo buttons",
             "apparel", (70, 150)),
            ("Oxford Shirt", "button-down Oxford shirt in breathable cotton", "apparel", (40, 90)),
            ("Sweater", "crew-neck sweater knitted from fine, itch-free merino wool",
             "apparel", (60, 140)),
            ("Jogger", "pair of joggers with an elastic waist, zip pockets and cuffed ankles",
             "apparel", (35, 75)),
            ("Rain Jacket", "packable rain jacket with taped seams and an adjustable hood",
             "apparel", (80, 180)),
            ("Polo", "piqué polo with a two-button placket and a ribbed collar",
             "apparel", (30, 70)),
        ],
        "numbered": False,
    },
    "electronics": {
        "weight": 11, "code": "ELE", "no_variants": 0.05,
        "brands": ["Voltix", "Lumen", "Arcwave", "Norsound", "Pixelcraft", "Zentro", "Orbit"],
        "models": ["Pro", "Air", "Max", "Mini", "Go", "Studio", "Edge", "Lite", "Plus"],
        "items": [
            ("Smartphone", "smartphone with an OLED display, all-day battery and a dual camera",
             "storage", (299, 999)),
            ("Tablet", "tablet with a laminated display and stylus support", "storage", (249, 899)),
            ("Laptop", "thin-and-light laptop with a backlit keyboard and USB-C charging",
             "storage", (649, 1799)),
            ("Wireless Earbuds", "pair of wireless earbuds with active noise cancelling",
             "color", (49, 249)),
            ("Headphones", "over-ear headphones with plush cushions and 30-hour battery life",
             "color", (79, 399)),
            ("Bluetooth Speaker", "water-resistant Bluetooth speaker with room-filling sound",
             "color", (39, 199)),
            ("Smartwatch", "smartwatch with heart-rate tracking, GPS and a week of battery",
             "size", (149, 449)),
            ("USB-C Charger", "compact GaN charger that fast-charges a phone and a laptop",
             "none", (19, 69)),
            ("Power Bank", "slim power bank that charges two devices at once",
             "capacity", (25, 60)),
        ],
        "numbered": True,
    },
    "home": {
        "weight": 10, "code": "HOM", "no_variants": 0.05,
        "brands": ["Hearth & Oak", "Nordhem", "Casa Lume", "Willow Lane", "Stillwater", "Ardent"],
        "models": ["Nordic", "Coastal", "Heritage", "Modern", "Loft", "Meadow", "Atelier",
                   "Haven", "Studio"],
        "items": [
            ("Linen Throw Pillow", "throw pillow with a removable cover and a feather-blend insert",
             "color", (25, 60)),
            ("Ceramic Table Lamp", "table lamp with a linen shade and a warm, dimmable glow",
             "color", (59, 189)),
            ("Wool Area Rug", "hand-tufted area rug with a low pile that is easy to vacuum",
             "rug", (79, 199)),
            ("Duvet Cover Set", "cotton percale duvet cover set, pre-washed for a soft feel",
             "bed", (89, 179)),
            ("Bath Towel Set", "set of absorbent towels in long-staple cotton", "color", (39, 89)),
            ("Wall Clock", "silent-sweep wall clock with a minimalist face", "none", (29, 99)),
            ("Stoneware Vase", "hand-finished vase with a reactive glaze", "none", (24, 79)),
            ("Rattan Storage Basket", "sturdy woven storage basket with carry handles",
             "size", (22, 69)),
        ],
        "numbered": False,
    },
    "kitchen": {
        "weight": 10, "code": "KIT", "no_variants": 0.05,
        "brands": ["Copperleaf", "Brightforge", "Saltbox", "Panterra", "Mesa", "Fennel & Co"],
        "models": ["Signature", "Everyday", "Heritage", "Pro", "Artisan", "Classic", "Chef's"],
        "items": [
            ("Cast Iron Skillet", "pre-seasoned skillet that goes from stovetop to oven",
             "pan", (29, 89)),
            ("Enameled Dutch Oven", "Dutch oven for braises, stews and crusty bread",
             "dutch", (89, 329)),
            ("Knife Set", "knife set with full-tang blades and a hardwood block", "none",
             (79, 299)),
            ("Cutting Board", "reversible end-grain cutting board with a juice groove",
             "size", (29, 119)),
            ("Tri-Ply Saucepan", "saucepan with a tight-fitting lid and a pour spout",
             "pan", (39, 139)),
            ("Mixing Bowls", "set of nesting mixing bowls with non-slip bases", "color", (24, 59)),
            ("French Press", "double-wall French press that keeps coffee hot", "volume",
             (25, 69)),
            ("Utensil Set", "silicone utensil set that won't scratch your pans", "none", (15, 45)),
        ],
        "numbered": False,
    },
    "books": {
        "weight": 9, "code": "BOK", "no_variants": 0.3, "price": (9, 22),
        "titles_adj": ["Silent", "Lost", "Hidden", "Last", "Northern", "Quiet", "Burning",
                       "Glass", "Paper", "Winter", "Salt", "Midnight", "Distant", "Little"],
        "titles_noun": ["Harbor", "Orchard", "Cartographer", "Lighthouse", "Garden", "River",
                        "Kingdom", "Archive", "Machine", "Season", "Library", "Atlas", "Tide"],
        "authors": ["Elena Marsh", "Tomas Reyes", "Priya Natarajan", "Jonah Whitfield",
                    "Ada Okafor", "Hugo Lindqvist", "Mei Tanaka", "Caleb Drummond",
                    "Sofia Albescu", "Rafael Ortega"],
        "genres": ["A sweeping literary novel", "A taut, twisting thriller",
                   "A candid, funny memoir", "A vivid narrative history", "An epic fantasy",
                   "A tender coming-of-age story", "A slow-burning mystery"],
        "blurbs": ["a book-club favourite", "shortlisted for a national prize",
                   "now in a new edition", "the first in a series", "a bestseller"],
    },
    "toys": {
        "weight": 9, "code": "TOY", "no_variants": 0.1,
        "brands": ["Little Maker", "Wonderbox", "Brickfield", "Puddle & Pine", "Tinkertown"],
        "models": ["Deluxe", "Junior", "Rainbow", "Explorer", "Classic", "Mega", "Adventure"],
        "items": [
            ("Building Blocks", "set of interlocking building blocks for open-ended play",
             "pieces", (19, 79)),
            ("Plush Bear", "super-soft plush bear, safe from birth", "color", (12, 35)),
            ("Wooden Train Set", "wooden train set with bridges, tunnels and magnetic couplings",
             "none", (39, 119)),
            ("Jigsaw Puzzle", "jigsaw puzzle with thick, snug-fitting pieces", "pieces", (12, 29)),
            ("Art Kit", "art kit with washable markers, crayons and a sketchbook", "none",
             (15, 45)),
            ("RC Car", "remote-control car with a rechargeable battery and all-terrain tyres",
             "color", (29, 99)),
            ("Board Game", "family board game for 2-6 players, ages 8 and up", "none", (19, 49)),
        ],
        "numbered": False,
    },
    "beauty": {
        "weight": 9, "code": "BEA", "no_variants": 0.1,
        "brands": ["Glowhaus", "Fern & Fig", "Purelle", "Aurum", "Solace", "Dewline"],
        "models": ["Hydrating", "Daily", "Botanical", "Calming", "Brightening", "Gentle",
                   "Barrier Repair"],
        "items": [
            ("Face Serum", "lightweight serum that absorbs fast and layers under makeup",
             "volume", (18, 68)),
            ("Moisturizer", "fragrance-free moisturizer for all skin types", "volume", (14, 52)),
            ("Lip Tint", "buildable lip tint with a soft, balmy finish", "shade", (9, 24)),
            ("Foundation", "medium-coverage foundation with a natural, skin-like finish",
             "shade", (18, 48)),
            ("Cleanser", "low-foam cleanser that removes sunscreen without stripping",
             "volume", (9, 32)),
            ("Shampoo", "sulfate-free shampoo for shiny, manageable hair", "volume", (8, 28)),
            ("Sunscreen SPF 50", "broad-spectrum sunscreen with no white cast", "none", (12, 34)),
        ],
        "numbered": False,
        "extras": ["Dermatologist tested.", "Vegan and cruelty-free.", "Free of added fragrance.",
                   "Recyclable packaging.", "A customer favourite."],
    },
    "sports": {
        "weight": 10, "code": "SPO", "no_variants": 0.05,
        "brands": ["Ironpeak", "Flowstate", "Trailhead", "Apex Motion", "Bluewater", "Corefit"],
        "models": ["Pro", "Training", "Performance", "Studio", "Endurance", "Compact", "Elite"],
        "items": [
            ("Yoga Mat", "non-slip yoga mat with alignment lines and a carry strap", "color",
             (25, 89)),
            ("Adjustable Dumbbell", "adjustable dumbbell that replaces a whole rack", "weight",
             (149, 399)),
            ("Resistance Bands", "set of latex-free resistance bands in graded strengths",
             "none", (15, 39)),
            ("Cycling Helmet", "ventilated cycling helmet with a dial-fit system", "size",
             (49, 179)),
            ("Water Bottle", "insulated steel bottle that keeps drinks cold for 24 hours",
             "bottle", (19, 45)),
            ("Running Shorts", "pair of running shorts with a built-in liner and a zip pocket",
             "apparel", (25, 60)),
            ("Tennis Racket", "graphite tennis racket with a forgiving sweet spot", "grip",
             (89, 249)),
            ("Jump Rope", "speed jump rope with ball-bearing handles", "none", (12, 29)),
        ],
        "numbered": False,
    },
    "grocery": {
        "weight": 9, "code": "GRO", "no_variants": 0.15,
        "brands": ["Green Acre", "Harvest Table", "Little Farm", "Old Mill", "Sunbeam Pantry",
                   "Wildflower"],
        "models": ["Organic", "Everyday", "Reserve", "Farmhouse", "Heritage", "Select"],
        "items": [
            ("Coffee Beans", "bag of whole-bean coffee, a medium roast with cocoa and cherry notes",
             "grams", (9, 19)),
            ("Olive Oil", "bottle of extra-virgin olive oil, first harvest, with a peppery finish",
             "ml", (9, 24)),
            ("Rolled Oats", "bag of rolled oats for porridge, overnight oats and baking",
             "grams", (3, 7)),
            ("Wildflower Honey", "jar of unfiltered honey from small apiaries", "jar", (7, 16)),
            ("Roasted Almonds", "bag of lightly salted, dry-roasted almonds", "grams", (6, 14)),
            ("Green Tea", "tin of loose-leaf green tea with a grassy, sweet cup", "none", (7, 18)),
            ("Bronze-Cut Pasta", "pack of durum wheat pasta that holds sauce beautifully",
             "none", (3, 7)),
            ("Dark Chocolate", "70% dark chocolate bar made with fairly traded cacao", "none",
             (3, 6)),
        ],
        "numbered": False,
        "extras": ["Best before date printed on the pack.", "Sustainably sourced.",
                   "Store in a cool, dry place.", "A pantry staple.", "Small-batch produced."],
    },
}


def article(phrase: str) -> str:
    """``phrase`` with "A"/"An" in front, unless it starts with a digit."""
    if phrase[:1].isdigit():
        return phrase[0].upper() + phrase[1:]
    return ("An " if phrase[0].lower() in "aeiou" else "A ") + phrase


# --------------------------------------------------------------------------------------------
# helpers

def slug(text: str) -> str:
    """Lowercase ``[a-z0-9-]`` slug of ``text``."""
    s = text.lower().replace("&", "and").replace("%", "pct").replace(".", "-")
    s = re.sub(r"[^a-z0-9]+", "-", s)
    return s.strip("-")


def clip_slug(s: str, limit: int) -> str:
    """Cut a slug to ``limit`` characters at a word boundary where possible."""
    if len(s) <= limit:
        return s
    cut = s[:limit]
    if "-" in cut[limit // 2:]:
        cut = cut[:cut.rfind("-")]
    return cut.strip("-")


def charm(cents: float) -> int:
    """A retail-looking price in cents: x.99 above $20, x.49/x.99 below, never below 99."""
    c = max(int(round(cents)), 99)
    if c >= 2000:
        return (c // 100) * 100 + 99 if c % 100 >= 50 else max((c // 100) * 100 - 1, 99)
    return (c // 50) * 50 + 49 if c % 50 >= 25 else max((c // 50) * 50 - 1, 99)


def abbrev(value: str) -> str:
    """Short uppercase SKU fragment for an attribute value."""
    parts = [x for x in re.split(r"[^A-Za-z0-9]+", value.upper()) if x]
    if parts and parts[0][:1].isdigit():
        return "".join(parts)[:7]
    return "".join(x[:3] for x in parts[:2])


def allocate(total: int, weights: list[int]) -> list[int]:
    """Split ``total`` in proportion to ``weights`` (largest remainder; sums exactly)."""
    w = sum(weights)
    raw = [total * x / w for x in weights]
    out = [int(r) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: (-(raw[i] - out[i]), i))
    for i in order[: total - sum(out)]:
        out[i] += 1
    return out


def pick_colors(rng: random.Random, k: int) -> list[str]:
    return rng.sample(COLORS, k)


def combos(a_name: str, a_vals: list[str], b_name: str, b_vals: list[str]) -> list[Attrs]:
    return [{a_name: a, b_name: b} for b in b_vals for a in a_vals]


# --------------------------------------------------------------------------------------------
# variant plans per kind

def plan_shoes(rng: random.Random) -> Plan:
    n_colors = rng.choice([1, 1, 2])
    max_sizes = 8 // n_colors
    n_sizes = rng.randint(2 if n_colors == 1 else 1, max_sizes)
    if n_colors == 2 and n_sizes == 1:
        n_sizes = 2
    all_sizes = [str(s) for s in range(36, 48)]
    start = rng.randint(0, len(all_sizes) - n_sizes)
    sizes = all_sizes[start:start + n_sizes]
    colors = pick_colors(rng, n_colors)
    special = colors[-1] if n_colors == 2 and rng.random() < 0.3 else None
    return [(a, 1.08 if a["color"] == special else 1.0)
            for a in combos("size", sizes, "color", colors)]


APPAREL_SIZES = ["XS", "S", "M", "L", "XL", "XXL"]


def plan_apparel(rng: random.Random) -> Plan:
    n_colors = rng.choice([1, 1, 2])
    n_sizes = rng.randint(2, min(6, 8 // n_colors))
    start = rng.randint(0, len(APPAREL_SIZES) - n_sizes)
    sizes = APPAREL_SIZES[start:start + n_sizes]
    colors = pick_colors(rng, n_colors)
    plus = rng.random() < 0.4
    return [(a, 1.1 if plus and a["size"] == "XXL" else 1.0)
            for a in combos("size", sizes, "color", colors)]


def plan_for(kind: str, rng: random.Random) -> Plan:
    if kind == "storage":
        tiers = ["64GB", "128GB", "256GB", "512GB", "1TB"]
        start = rng.randint(0, 2)
        storages = tiers[start:start + rng.randint(1, 3)]
        colors = rng.sample(["black", "silver", "midnight", "starlight", "blue", "graphite"],
                            rng.randint(1, 2) if len(storages) < 3 else 1)
        if len(storages) * len(colors) < 2:
            colors = colors + [c for c in ["silver", "black"] if c not in colors][:1]
        return [(a, 1.0 + 0.2 * storages.index(a["storage"]))
                for a in combos("storage", storages, "color", colors)]
    if kind == "color":
        return [({"color": c}, 1.0) for c in pick_colors(rng, rng.randint(2, 5))]
    if kind == "size":
        sizes = rng.choice([["S", "M", "L"], ["small", "medium", "large"], ["40mm", "44mm"]])
        return [({"size": s}, 1.0 + 0.1 * i) for i, s in enumerate(sizes)]
    if kind == "capacity":
        caps = ["5000mAh", "10000mAh", "20000mAh"][: rng.randint(2, 3)]
        return [({"capacity": c}, 1.0 + 0.35 * i) for i, c in enumerate(caps)]
    if kind == "rug":
        dims = ["60x90 cm", "120x170 cm", "160x230 cm", "200x300 cm"][: rng.randint(2, 4)]
        return [({"size": d}, [1.0, 2.4, 3.9, 6.0][i]) for i, d in enumerate(dims)]
    if kind == "bed":
        beds = ["twin", "full", "queen", "king"][rng.randint(0, 1):]
        color = rng.choice(["white", "sand", "grey", "sage"])
        return [({"size": b, "color": color}, 1.0 + 0.15 * i) for i, b in enumerate(beds)]
    if kind == "pan":
        sizes = ["20 cm", "24 cm", "28 cm", "32 cm"][rng.randint(0, 1):][: rng.randint(2, 3)]
        return [({"diameter": s}, 1.0 + 0.2 * i) for i, s in enumerate(sizes)]
    if kind == "dutch":
        sizes = ["3.5 qt", "5.5 qt", "7.25 qt"]
        colors = rng.sample(["cherry", "ocean", "sage", "white", "black"], rng.randint(1, 2))
        return [(a, 1.0 + 0.25 * sizes.index(a["capacity"]))
                for a in combos("capacity", sizes, "color", colors)]
    if kind == "volume":
        vols = rng.choice([["30 ml", "50 ml"], ["100 ml", "250 ml", "500 ml"], ["350 ml", "1 l"]])
        return [({"volume": v}, 1.0 + 0.6 * i) for i, v in enumerate(vols)]
    if kind == "pieces":
        pcs = rng.choice([["100 pcs", "250 pcs"], ["500 pcs", "1000 pcs"], ["60 pcs", "120 pcs",
                                                                               "300 pcs"]])
        return [({"pieces": p}, 1.0 + 0.5 * i) for i, p in enumerate(pcs)]
    if kind == "shade":
        shades = ["fair", "light", "light-medium", "medium", "tan", "deep", "rose", "berry",
                  "nude", "coral"]
        k = rng.randint(3, 6)
        start = rng.randint(0, len(shades) - k)
        return [({"shade": s}, 1.0) for s in shades[start:start + k]]
    if kind == "weight":
        ws = ["2-10 kg", "2-24 kg", "4-32 kg"][: rng.randint(2, 3)]
        return [({"weight_range": w}, 1.0 + 0.5 * i) for i, w in enumerate(ws)]
    if kind == "bottle":
        sizes = ["500 ml", "750 ml", "1 l"]
        colors = pick_colors(rng, rng.randint(1, 2))
        return [(a, 1.0 + 0.15 * sizes.index(a["volume"]))
                for a in combos("volume", sizes, "color", colors)]
    if kind == "apparel":
        return plan_apparel(rng)
    if kind == "grip":
        return [({"grip": g}, 1.0) for g in ["G2", "G3", "G4"]]
    if kind == "grams":
        packs = ["250 g", "500 g", "1 kg"][: rng.randint(2, 3)]
        return [({"pack": p}, [1.0, 1.85, 3.4][i]) for i, p in enumerate(packs)]
    if kind == "ml":
        packs = ["250 ml", "500 ml", "1 l"][: rng.randint(2, 3)]
        return [({"volume": p}, [1.0, 1.8, 3.2][i]) for i, p in enumerate(packs)]
    if kind == "jar":
        return [({"jar": j}, [1.0, 1.7][i]) for i, j in enumerate(["340 g", "680 g"])]
    if kind == "format":
        fmts = rng.choice([["paperback", "hardcover"], ["paperback", "hardcover", "ebook"],
                           ["hardcover", "ebook"], ["paperback", "audiobook"]])
        mult = {"paperback": 1.0, "hardcover": 1.6, "ebook": 0.7, "audiobook": 1.3}
        return [({"format": f}, mult[f]) for f in fmts]
    return []


# --------------------------------------------------------------------------------------------
# product generation

class Generator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.product_ids: set[str] = set()
        self.variant_ids: set[str] = set()
        self.names: set[str] = set()
        self.skus: set[str] = set()
        self.seq = 0

    def unique_id(self, base: str, taken: set[str]) -> str:
        base = clip_slug(base, MAX_ID - 3) or "item"
        cand, n = base, 2
        while cand in taken:
            cand = f"{base}-{n}"
            n += 1
        taken.add(cand)
        return cand

    def unique_sku(self, base: str) -> str:
        cand, n = base, 2
        while cand in self.skus:
            cand = f"{base}-{n}"
            n += 1
        self.skus.add(cand)
        return cand

    def stock(self) -> int:
        """On-hand units: mostly tens to a few hundred, a long tail of deep stock."""
        return max(1, min(2000, int(self.rng.lognormvariate(4.0, 0.9))))

    def name_and_description(
        self, category: str, cfg: dict[str, Any]
    ) -> tuple[str, str, str, tuple[int, int]]:
        """(name, description, variant kind, USD price range) for a new product."""
        rng = self.rng
        for attempt in range(50):
            if category == "books":
                adj, noun = rng.choice(cfg["titles_adj"]), rng.choice(cfg["titles_noun"])
                pattern = rng.choice(["The {a} {n}", "{a} {n}", "The {n} of {a} Things",
                                      "A {a} {n}", "The {n}'s Daughter"])
                name = pattern.format(a=adj, n=noun)
                desc = (f"{rng.choice(cfg['genres'])} by {rng.choice(cfg['authors'])}. "
                        f"{rng.randint(180, 640)} pages; {rng.choice(cfg['blurbs'])}.")
                kind, price_range = "format", cfg["price"]
            else:
                brand, model = rng.choice(cfg["brands"]), rng.choice(cfg["models"])
                noun, blurb, kind, price_range = rng.choice(cfg["items"])
                parts = [brand, model] + ([noun] if noun else [])
                if cfg.get("numbered") and rng.random() < 0.6:
                    parts.append(str(rng.randint(2, 9)))
                name = " ".join(parts)
                extra = rng.choice(cfg.get("extras") or [
                    "Backed by a two-year warranty.", "Ships in recyclable packaging.",
                    "Designed to last for years.", "A customer favourite.",
                    "Thoughtfully made, fairly priced.", "Free returns within 30 days.",
                ])
                desc = f"{article(blurb)}. {extra}"
            if attempt >= 40:
                name = f"{name} {attempt}"
            if name not in self.names:
                self.names.add(name)
                return name, desc, kind, price_range
        raise RuntimeError("could not find a unique name")  # pragma: no cover

    def product(self, category: str, cfg: dict[str, Any]) -> dict[str, Any]:
        rng = self.rng
        self.seq += 1
        name, desc, kind, (lo, hi) = self.name_and_description(category, cfg)
        product_id = self.unique_id(slug(name), self.product_ids)
        base = charm(100 * rng.uniform(lo, hi))

        extra: dict[str, float] = {}
        if rng.random() < 0.25:
            extra["EUR"] = EXTRA_CURRENCIES["EUR"] * rng.uniform(0.98, 1.06)
            if rng.random() < 0.35:
                extra["GBP"] = EXTRA_CURRENCIES["GBP"] * rng.uniform(0.98, 1.06)

        def money_list(amount_usd: int) -> list[dict[str, Any]]:
            return [{"amount": charm(amount_usd * f), "currency": c} for c, f in extra.items()]

        body: dict[str, Any] = {
            "product_id": product_id,
            "name": name,
            "description": desc,
            "category": category,
            "price": {"amount": base, "currency": "USD"},
        }
        if extra:
            body["prices"] = money_list(base)

        if kind == "shoes":
            plan = plan_shoes(rng)
        elif kind == "apparel":
            plan = plan_apparel(rng)
        elif rng.random() < cfg["no_variants"] or kind == "none":
            plan = []
        else:
            plan = plan_for(kind, rng)

        if not plan:
            body["stock"] = self.stock()
            return body

        variants = []
        for attrs, mult in plan:
            vid = self.unique_id(f"{product_id}-{slug('-'.join(attrs.values()))}", self.variant_ids)
            sku = self.unique_sku(
                "-".join([cfg["code"], f"{self.seq:04d}"] + [abbrev(v) for v in attrs.values()]))
            v: dict[str, Any] = {"variant_id": vid, "sku": sku, "attributes": dict(attrs)}
            if mult != 1.0:
                amount = charm(base * mult)
                if amount != base:
                    v["price"] = {"amount": amount, "currency": "USD"}
                    if extra:
                        v["prices"] = money_list(amount)
            v["stock"] = self.stock()
            variants.append(v)
        body["variants"] = variants
        return body

    def catalog(self, count: int) -> list[dict[str, Any]]:
        names = list(CATEGORIES)
        counts = allocate(count, [CATEGORIES[c]["weight"] for c in names])
        products: list[dict[str, Any]] = []
        for cat, n in zip(names, counts, strict=True):
            products.extend(self.product(cat, CATEGORIES[cat]) for _ in range(n))
        self.flash_sales_and_sold_out(products)
        return products

    def flash_sales_and_sold_out(self, products: list[dict[str, Any]]) -> None:
        """Mark the flash-sale variants (distinct products) and a handful of sold-out items."""
        rng = self.rng
        hot_categories = ("shoes", "electronics", "apparel", "sports", "toys")
        candidates = [p for p in products if p.get("variants") and p["category"] in hot_categories]
        flash_products = rng.sample(candidates, min(FLASH_SALE_VARIANTS, len(candidates)))
        flash_ids: list[str] = []
        for i, p in enumerate(flash_products):
            v = rng.choice(p["variants"])
            v["stock"] = FLASH_SALE_STOCK
            v["hold_ttl"] = FLASH_SALE_TTL
            if i == 0:
                v["shards"] = FLASH_SALE_SHARDS
            flash_ids.append(v["variant_id"])

        sellable: list[dict[str, Any]] = []
        for p in products:
            if p.get("variants"):
                sellable.extend(v for v in p["variants"] if v["variant_id"] not in flash_ids)
            else:
                sellable.append(p)
        n_sold_out = min(SOLD_OUT_VARIANTS, max(1, len(sellable) // 50))
        for item in rng.sample(sellable, min(n_sold_out, len(sellable))):
            item["stock"] = 0


def check(products: list[dict[str, Any]]) -> None:
    """Sanity checks on the generated catalog (ids, money, stock); raises AssertionError."""
    id_re = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
    pids: set[str] = set()
    sellable_ids: set[str] = set()

    def check_money(m: Any) -> None:
        assert isinstance(m, dict) and type(m["amount"]) is int and m["amount"] > 0, m
        assert isinstance(m["currency"], str) and len(m["currency"]) == 3, m

    for p in products:
        pid = p["product_id"]
        assert id_re.match(pid) and len(pid) <= MAX_ID, pid
        assert pid not in pids, f"duplicate product id {pid}"
        pids.add(pid)
        check_money(p["price"])
        for m in p.get("prices", []):
            check_money(m)
        if "variants" in p:
            assert p["variants"] and "stock" not in p, pid
            for v in p["variants"]:
                vid = v["variant_id"]
                assert id_re.match(vid) and len(vid) <= MAX_ID, vid
                assert vid not in sellable_ids, f"duplicate variant id {vid}"
                sellable_ids.add(vid)
                assert type(v["stock"]) is int and v["stock"] >= 0, vid
                if "price" in v:
                    check_money(v["price"])
        else:
            assert pid not in sellable_ids, f"implicit variant {pid} collides"
            sellable_ids.add(pid)
            assert type(p["stock"]) is int and p["stock"] >= 0, pid


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED,
                    help=f"random seed (default {DEFAULT_SEED})")
    ap.add_argument("--count", type=int, default=DEFAULT_COUNT,
                    help=f"number of products (default {DEFAULT_COUNT})")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT,
                    help="output file, '-' for stdout (default: catalog.json next to this script)")
    args = ap.parse_args(argv)
    if args.count < 1:
        ap.error("--count must be at least 1")

    products = Generator(args.seed).catalog(args.count)
    check(products)
    text = json.dumps(products, indent=2, ensure_ascii=False) + "\n"
    if str(args.out) == "-":
        sys.stdout.write(text)
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")

    variants = [v for p in products for v in p.get("variants", [])]
    implicit = [p for p in products if "variants" not in p]
    units = sum(v["stock"] for v in variants) + sum(p["stock"] for p in implicit)
    flash = [v["variant_id"] for v in variants if "hold_ttl" in v]
    print(f"wrote {args.out}: {len(products)} products ({len(implicit)} without variants), "
          f"{len(variants) + len(implicit)} sellable variants, {units} units; "
          f"flash sale: {', '.join(flash)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
