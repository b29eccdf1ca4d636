"""The shop: a French jewellery web site (bijouterie) with products, pages, search
vocabulary, referrers and outbound links.

The catalogue is fixed (built from `CATALOGUE_SEED`, not the traffic seed), so URLs and
product popularity are the same in every run and aggregates are comparable across runs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import quote

SITE = "https://www.bijoux-example.fr"
CATALOGUE_SEED = 1_789
PRODUCT_COUNT = 300
PRODUCT_ZIPF = 0.9  # exponent of product popularity by rank

# category slug -> (share of products, product kinds, materials, decorations)
CATEGORIES: dict[str, tuple[float, tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "bagues": (
        0.30,
        (
            "bague",
            "alliance",
            "solitaire",
            "chevaliere",
            "bague-toi-et-moi",
            "bague-de-fiancailles",
            "bague-jonc",
            "bague-empierree",
        ),
        ("or-jaune-18k", "or-blanc-18k", "or-rose-9k", "argent-925", "platine"),
        ("diamant", "saphir", "emeraude", "rubis", "perle", "topaze", "oxydes", ""),
    ),
    "colliers": (
        0.20,
        ("collier", "pendentif", "sautoir", "chaine", "ras-de-cou", "medaille"),
        ("or-jaune-18k", "or-blanc-18k", "argent-925", "plaque-or", "acier"),
        ("coeur", "perles-de-culture", "diamant", "initiale", "etoile", ""),
    ),
    "bracelets": (
        0.18,
        ("bracelet", "jonc", "gourmette", "manchette", "bracelet-tennis", "bracelet-cordon"),
        ("or-jaune-18k", "or-rose-9k", "argent-925", "acier", "cuir"),
        ("diamants", "grave", "maille-forcat", "perles", ""),
    ),
    "boucles-d-oreilles": (
        0.20,
        ("boucles-d-oreilles", "creoles", "puces-d-oreilles", "pendantes", "dormeuses", "ear-cuff"),
        ("or-jaune-18k", "or-blanc-18k", "argent-925", "plaque-or"),
        ("diamant", "perle", "oxydes", "emeraude", ""),
    ),
    "montres": (
        0.12,
        (
            "montre-femme",
            "montre-homme",
            "montre-automatique",
            "montre-chronographe",
            "montre-connectee",
        ),
        ("acier", "or-rose", "titane", "cuir-noir", "milanais"),
        ("nacre", "cadran-bleu", "saphir", ""),
    ),
}

SUBCATEGORIES = (
    "/bagues/alliances",
    "/bagues/solitaires",
    "/bagues/bagues-de-fiancailles",
    "/colliers/pendentifs",
    "/colliers/chaines",
    "/bracelets/joncs",
    "/boucles-d-oreilles/creoles",
    "/montres/femme",
    "/montres/homme",
    "/mariage",
    "/nouveautes",
    "/idees-cadeaux",
    "/idees-cadeaux/fete-des-meres",
    "/soldes",
    "/gravure",
)
INFO_PAGES = (
    "/nos-boutiques",
    "/nos-boutiques/paris-opera",
    "/nos-boutiques/lyon-bellecour",
    "/nos-boutiques/bordeaux",
    "/contact",
    "/cgv",
    "/livraison-et-retours",
    "/guide-des-tailles",
    "/entretien-des-bijoux",
    "/carte-cadeau",
    "/mentions-legales",
    "/politique-de-confidentialite",
    "/faq",
)
BLOG_PAGES = (
    "/journal/tendances-bijoux-2025",
    "/journal/choisir-sa-bague-de-fiancailles",
    "/journal/or-18-carats-ou-9-carats",
    "/journal/entretenir-ses-perles",
    "/journal/mesurer-son-tour-de-doigt",
    "/journal/histoire-du-solitaire",
)
CHECKOUT_PAGES = ("/commande/identification", "/commande/livraison", "/commande/paiement")
ACCOUNT_PAGES = (
    "/mon-compte",
    "/mon-compte/commandes",
    "/mon-compte/adresses",
    "/mon-compte/favoris",
    "/mon-compte/informations",
)
CATEGORY_FILTERS = (
    "tri=prix-croissant",
    "tri=prix-decroissant",
    "tri=nouveautes",
    "page=2",
    "page=3",
    "matiere=or-rose",
    "matiere=argent-925&prix=50-100",
    "pierre=diamant",
    "prix=100-200&page=2",
)
PRODUCT_PARAMS = (
    "taille=52",
    "taille=54",
    "taille=56",
    "couleur=or-rose",
    "couleur=or-blanc",
    "gravure=1",
    "variante=2",
)
FRAGMENTS = ("avis", "description", "caracteristiques", "livraison", "top", "guide-tailles")

SEARCH_TERMS = (
    "bague or",
    "collier",
    "bracelet argent",
    "boucles d'oreilles",
    "montre femme",
    "alliance",
    "bague de fiançailles",
    "solitaire diamant",
    "creoles or",
    "pendentif coeur",
    "perles",
    "bracelet jonc",
    "chevalière",
    "montre homme",
    "collier prénom",
    "bague argent",
    "puces d'oreilles",
    "gourmette bébé",
    "médaille baptême",
    "bracelet femme",
    "bague femme",
    "alliance or blanc",
    "collier perle",
    "bague saphir",
    "émeraude",
    "rubis",
    "or rose",
    "bracelet tennis",
    "montre automatique",
    "sautoir",
    "ras de cou",
    "bague toi et moi",
    "boucles d'oreilles pendantes",
    "bijoux mariage",
    "cadeau fête des mères",
    "gravure",
    "carte cadeau",
    "bague homme",
    "chaine or 18 carats",
    "bracelet cuir homme",
    "montre connectée",
    "ear cuff",
    "dormeuses",
    "bague fine",
    "bijoux soldes",
    "bague taille 54",
    "collier moins de 100€",
    "nouveautés",
    "bague empierrée",
    "topaze",
    "bijoux argent 925",
    "plaqué or",
    "alliance platine",
    "bague diamant 0,3 carat",
    "boucles d'oreilles perle",
    "collier étoile",
    "bracelet initiale",
    "idée cadeau femme",
)
SEARCH_TYPOS = (
    "colier",
    "braclet",
    "bage or",
    "boucle d oreille",
    "montre fmme",
    "allience",
    "solitere",
    "pendantif",
    "chevaliere",
    "emeraude",
)

SEARCH_ENGINES = (
    ("https://www.google.fr/", 0.55),
    ("https://www.google.com/", 0.15),
    ("https://www.bing.com/", 0.08),
    ("https://www.qwant.com/", 0.07),
    ("https://duckduckgo.com/", 0.06),
    ("https://www.ecosia.org/", 0.04),
    ("https://search.yahoo.com/", 0.03),
    ("https://www.google.be/", 0.02),
)
MAGAZINES = (
    "https://www.marieclaire.fr/bijoux-tendance,1234.asp",
    "https://www.elle.fr/Mode/Les-bijoux/Bagues-tendance",
    "https://www.madmoizelle.com/idees-cadeaux-bijoux",
    "https://forum.doctissimo.fr/mariage/alliances/sujet_12345_1.htm",
)
WEBMAILS = (
    "https://mail.google.com/",
    "https://webmail1.orange.fr/webmail/fr_FR/read.html?FOLDER=SF_INBOX&IDMSG=48213&SORTBY=1",
    "https://outlook.live.com/",
    "https://webmail.free.fr/",
)
CAMPAIGNS = (
    "noel-2025",
    "saint-valentin",
    "fete-des-meres",
    "soldes-hiver",
    "black-friday",
    "nouvelle-collection",
    "mariage-2025",
)

SOCIAL_LINKS = (
    "https://www.instagram.com/bijouxexample/",
    "https://www.facebook.com/bijouxexample",
    "https://fr.pinterest.com/bijouxexample/",
    "https://www.youtube.com/watch?v=dQw4bJx0Xy8",
    "https://www.tiktok.com/@bijouxexample",
    "https://fr.trustpilot.com/review/bijoux-example.fr",
)
SERVICE_LINKS = (
    "https://www.google.com/maps/place/Bijoux+Example+Op%C3%A9ra/@48.8708,2.3317,17z",
    "https://www.paypal.com/fr/home",
    "https://www.alma.eu/fr/paiement-en-plusieurs-fois",
    "tel:+33142000000",
    "mailto:service-client@bijoux-example.fr",
    "https://www.laposte.fr/outils/suivre-vos-envois",
)


@dataclass(frozen=True, slots=True)
class Product:
    """One product: category slug and URL slug."""

    category: str
    slug: str

    @property
    def url(self) -> str:
        """Absolute URL of the product page."""
        return f"{SITE}/produit/{self.slug}"


def build_products(count: int = PRODUCT_COUNT) -> tuple[Product, ...]:
    """The catalogue, most popular first; `count` products (default 300), unique slugs."""
    rng = random.Random(CATALOGUE_SEED)  # noqa: S311 - fixed catalogue, not security
    products: list[Product] = []
    for category, (share, kinds, materials, decorations) in CATEGORIES.items():
        letter = category[0]
        for n in range(round(share * count)):
            parts = [rng.choice(kinds), rng.choice(materials), rng.choice(decorations)]
            slug = "-".join(p for p in parts if p) + f"-{letter}{1000 + n}"
            products.append(Product(category, slug))
    rng.shuffle(products)  # popularity rank is independent of category
    return tuple(products[:count])


@lru_cache(maxsize=16_384)
def encode_component(text: str) -> str:
    """`text` percent-encoded as a URL query value (cached: terms and URLs repeat a lot)."""
    return quote(text, safe="")


def search_results_url(terms: str) -> str:
    """The search results page of `terms` (URL-encoded in `q`)."""
    return f"{SITE}/recherche?q={encode_component(terms)}"
