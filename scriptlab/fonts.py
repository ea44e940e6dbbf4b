"""The font table: which pip-installed font renders which (script, style) cell.

Every font comes from a pinned pip package (``fontpkg-*`` Google Fonts,
``justmytype-intl-*`` Noto packs, matplotlib's bundled DejaVu), so every user
renders the same dataset and nothing is downloaded at run time. Variable fonts
are used at several weights: light-to-medium weights widen the sans/serif/mono
classes and the heaviest weights form the ``display`` class.

Every string is checked against the face's cmap (fontTools) before it is drawn:
no tofu boxes and no .notdef glyphs, ever.

``TABLES`` names the tables a dataset can draw from (``DataConfig.fonts``): "default" is
``FACES``; "diverse" adds 43 families from the ``diverse-fonts`` extra, whole families held out.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from pathlib import Path
from typing import NamedTuple

from scriptlab.validation import check_name
from scriptlab.words import WORDS

SCRIPTS: tuple[str, ...] = (
    "latin",
    "cyrillic",
    "greek",
    "arabic",
    "hebrew",
    "devanagari",
    "thai",
    "chinese",
    "japanese",
    "korean",
)
STYLES: tuple[str, ...] = ("sans", "serif", "mono", "hand", "display")


class Face(NamedTuple):
    """One renderable face: a font file (at one variable weight) with its labels.

    Attributes:
      family: the font family's name.
      style: its font-style label, one of ``STYLES``.
      package: the pip distribution that ships it
      module: its import name
      file: path inside the module
      weight: wght axis value for variable fonts, None for static files
      scripts: the scripts it renders.
      heldout: held-out-fonts split only, never in train/val/test
    """

    family: str
    style: str
    package: str
    module: str
    file: str
    weight: int | None
    scripts: tuple[str, ...]
    heldout: bool = False


LAT, CYR, GRK = "latin", "cyrillic", "greek"
LCG = (LAT, CYR, GRK)


def _fp(family, style, dist, fname, weights, scripts, heldout=False):
    module = dist.replace("-", "_")
    return [
        Face(family, style, dist, module, f"files/{fname}", w, tuple(scripts), heldout)
        for w in weights
    ]


def _jmt(family, style, dist, fname, weights, scripts, heldout=False):
    module = dist.replace("-", "_")
    folder = family.lower().replace(" ", "")
    return [
        Face(family, style, dist, module, f"fonts/ofl/{folder}/{fname}", w, tuple(scripts), heldout)
        for w in weights
    ]


def _static(family, style, dist, fnames, scripts, heldout=False):
    module = dist.replace("-", "_")
    return [
        Face(family, style, dist, module, f"files/{f}", None, tuple(scripts), heldout)
        for f in fnames
    ]


_SANS_W, _DISPLAY_W = (350, 500), (800, 900)

FACES: tuple[Face, ...] = tuple(
    # --- sans
    _fp("Noto Sans", "sans", "fontpkg-noto-sans", "NotoSans[wdth,wght].ttf", _SANS_W, LCG)
    + _fp(
        "Open Sans",
        "sans",
        "fontpkg-open-sans",
        "OpenSans[wdth,wght].ttf",
        (400, 600),
        LCG + ("hebrew",),
    )
    + _fp(
        "Rubik", "sans", "fontpkg-rubik", "Rubik[wght].ttf", (400,), (LAT, CYR, "arabic", "hebrew")
    )
    + _fp("Roboto", "sans", "fontpkg-roboto", "Roboto[wdth,wght].ttf", _SANS_W, LCG, heldout=True)
    + _fp(
        "Noto Sans Arabic",
        "sans",
        "fontpkg-noto-sans-arabic",
        "NotoSansArabic[wdth,wght].ttf",
        _SANS_W,
        ("arabic",),
    )
    + _fp("Cairo", "sans", "fontpkg-cairo", "Cairo[slnt,wght].ttf", (400,), ("arabic",))
    + _static(
        "IBM Plex Sans Arabic",
        "sans",
        "fontpkg-ibm-plex-sans-arabic",
        ("IBMPlexSansArabic-Regular.ttf", "IBMPlexSansArabic-Medium.ttf"),
        ("arabic",),
        heldout=True,
    )
    + _fp("Heebo", "sans", "fontpkg-heebo", "Heebo[wght].ttf", _SANS_W, ("hebrew",))
    + _jmt(
        "Noto Sans Hebrew",
        "sans",
        "justmytype-intl-rtl",
        "NotoSansHebrew[wdth,wght].ttf",
        _SANS_W,
        ("hebrew",),
        heldout=True,
    )
    + _fp(
        "Noto Sans Devanagari",
        "sans",
        "fontpkg-noto-sans-devanagari",
        "NotoSansDevanagari[wdth,wght].ttf",
        _SANS_W,
        ("devanagari",),
    )
    + _static(
        "Hind", "sans", "fontpkg-hind", ("Hind-Regular.ttf", "Hind-Medium.ttf"), ("devanagari",)
    )
    + _static(
        "Mukta",
        "sans",
        "fontpkg-mukta",
        ("Mukta-Regular.ttf", "Mukta-Medium.ttf"),
        ("devanagari",),
        heldout=True,
    )
    + _fp(
        "Noto Sans Thai",
        "sans",
        "fontpkg-noto-sans-thai",
        "NotoSansThai[wdth,wght].ttf",
        _SANS_W,
        ("thai",),
    )
    + _static(
        "Prompt", "sans", "fontpkg-prompt", ("Prompt-Light.ttf", "Prompt-Regular.ttf"), ("thai",)
    )
    + _static(
        "Sarabun",
        "sans",
        "fontpkg-sarabun",
        ("Sarabun-Regular.ttf", "Sarabun-Medium.ttf"),
        ("thai",),
    )
    + _static(
        "Kanit",
        "sans",
        "fontpkg-kanit",
        ("Kanit-Light.ttf", "Kanit-Regular.ttf"),
        ("thai",),
        heldout=True,
    )
    + _jmt(
        "Noto Sans SC", "sans", "justmytype-intl-cjk", "NotoSansSC[wght].ttf", _SANS_W, ("chinese",)
    )
    + _jmt(
        "Noto Sans JP",
        "sans",
        "justmytype-intl-cjk",
        "NotoSansJP[wght].ttf",
        _SANS_W,
        ("japanese",),
    )
    + _jmt(
        "Noto Sans KR", "sans", "justmytype-intl-cjk", "NotoSansKR[wght].ttf", _SANS_W, ("korean",)
    )
    + _jmt(
        "Noto Sans TC",
        "sans",
        "justmytype-intl-cjk",
        "NotoSansTC[wght].ttf",
        _SANS_W,
        ("chinese", "japanese"),
        heldout=True,
    )
    # --- serif
    + _fp("Noto Serif", "serif", "fontpkg-noto-serif", "NotoSerif[wdth,wght].ttf", _SANS_W, LCG)
    + _fp("EB Garamond", "serif", "fontpkg-eb-garamond", "EBGaramond[wght].ttf", (400, 600), LCG)
    + _static(
        "PT Serif",
        "serif",
        "fontpkg-pt-serif",
        ("PT_Serif-Web-Regular.ttf", "PT_Serif-Web-Bold.ttf"),
        (LAT, CYR),
        heldout=True,
    )
    + [
        Face(
            "DejaVu Serif",
            "serif",
            "matplotlib",
            "matplotlib",
            "mpl-data/fonts/ttf/DejaVuSerif.ttf",
            None,
            LCG,
            True,
        )
    ]
    + _static(
        "Amiri", "serif", "fontpkg-amiri", ("Amiri-Regular.ttf", "Amiri-Bold.ttf"), ("arabic",)
    )
    + _fp(
        "Frank Ruhl Libre",
        "serif",
        "fontpkg-frank-ruhl-libre",
        "FrankRuhlLibre[wght].ttf",
        (400, 600),
        ("hebrew",),
    )
    # --- mono
    + _fp(
        "JetBrains Mono",
        "mono",
        "fontpkg-jetbrains-mono",
        "JetBrainsMono[wght].ttf",
        (400, 600),
        LCG,
    )
    + _static(
        "IBM Plex Mono",
        "mono",
        "fontpkg-ibm-plex-mono",
        ("IBMPlexMono-Regular.ttf", "IBMPlexMono-Medium.ttf"),
        (LAT, CYR),
    )
    + [
        Face(
            "DejaVu Sans Mono",
            "mono",
            "matplotlib",
            "matplotlib",
            "mpl-data/fonts/ttf/DejaVuSansMono.ttf",
            None,
            LCG,
        )
    ]
    + _fp(
        "Source Code Pro",
        "mono",
        "fontpkg-source-code-pro",
        "SourceCodePro[wght].ttf",
        (400, 600),
        LCG,
        heldout=True,
    )
    # --- hand
    + _fp("Caveat", "hand", "fontpkg-caveat", "Caveat[wght].ttf", (400, 600), (LAT, CYR))
    + _static(
        "Kalam",
        "hand",
        "fontpkg-kalam",
        ("Kalam-Light.ttf", "Kalam-Regular.ttf"),
        (LAT, "devanagari"),
    )
    + _static(
        "Indie Flower",
        "hand",
        "fontpkg-indie-flower",
        ("IndieFlower-Regular.ttf",),
        (LAT,),
        heldout=True,
    )
    + _static(
        "Pacifico", "hand", "fontpkg-pacifico", ("Pacifico-Regular.ttf",), (LAT, CYR), heldout=True
    )
    # --- display: heavy weights of the variable faces, plus display families
    + _fp("Noto Sans", "display", "fontpkg-noto-sans", "NotoSans[wdth,wght].ttf", _DISPLAY_W, LCG)
    + _fp(
        "Open Sans",
        "display",
        "fontpkg-open-sans",
        "OpenSans[wdth,wght].ttf",
        (800,),
        LCG + ("hebrew",),
    )
    + _fp("Oswald", "display", "fontpkg-oswald", "Oswald[wght].ttf", (600, 700), (LAT, CYR))
    + _static("Lobster", "display", "fontpkg-lobster", ("Lobster-Regular.ttf",), (LAT, CYR))
    + _fp(
        "Roboto",
        "display",
        "fontpkg-roboto",
        "Roboto[wdth,wght].ttf",
        _DISPLAY_W,
        LCG,
        heldout=True,
    )
    + _fp(
        "Noto Kufi Arabic",
        "display",
        "fontpkg-noto-kufi-arabic",
        "NotoKufiArabic[wght].ttf",
        _DISPLAY_W,
        ("arabic",),
    )
    + _fp("Cairo", "display", "fontpkg-cairo", "Cairo[slnt,wght].ttf", (900,), ("arabic",))
    + _fp("Heebo", "display", "fontpkg-heebo", "Heebo[wght].ttf", _DISPLAY_W, ("hebrew",))
    + _jmt(
        "Noto Sans Hebrew",
        "display",
        "justmytype-intl-rtl",
        "NotoSansHebrew[wdth,wght].ttf",
        (900,),
        ("hebrew",),
        heldout=True,
    )
    + _fp(
        "Noto Sans Devanagari",
        "display",
        "fontpkg-noto-sans-devanagari",
        "NotoSansDevanagari[wdth,wght].ttf",
        _DISPLAY_W,
        ("devanagari",),
    )
    + _static(
        "Mukta", "display", "fontpkg-mukta", ("Mukta-ExtraBold.ttf",), ("devanagari",), heldout=True
    )
    + _fp(
        "Noto Sans Thai",
        "display",
        "fontpkg-noto-sans-thai",
        "NotoSansThai[wdth,wght].ttf",
        _DISPLAY_W,
        ("thai",),
    )
    + _static(
        "Prompt",
        "display",
        "fontpkg-prompt",
        ("Prompt-ExtraBold.ttf", "Prompt-Black.ttf"),
        ("thai",),
    )
    + _static("Kanit", "display", "fontpkg-kanit", ("Kanit-Black.ttf",), ("thai",), heldout=True)
    + _jmt(
        "Noto Sans SC",
        "display",
        "justmytype-intl-cjk",
        "NotoSansSC[wght].ttf",
        _DISPLAY_W,
        ("chinese",),
    )
    + _jmt(
        "Noto Sans JP",
        "display",
        "justmytype-intl-cjk",
        "NotoSansJP[wght].ttf",
        _DISPLAY_W,
        ("japanese",),
    )
    + _jmt(
        "Noto Sans KR",
        "display",
        "justmytype-intl-cjk",
        "NotoSansKR[wght].ttf",
        _DISPLAY_W,
        ("korean",),
    )
    + _jmt(
        "Noto Sans TC",
        "display",
        "justmytype-intl-cjk",
        "NotoSansTC[wght].ttf",
        (900,),
        ("chinese", "japanese"),
        heldout=True,
    )
)

FAMILIES: tuple[str, ...] = tuple(dict.fromkeys(f.family for f in FACES))

# --- the diverse table: every default face (with its pool) plus 43 more pip families.
# Weighted towards Latin, Cyrillic and Greek, where a style shortcut pays most. Whole
# families are held out; a family that shares its design with a held-out default family
# (Roboto Mono with Roboto) is held out too. pip offers no second Korean, Chinese or
# Japanese family (no fontpkg-noto-serif-*, -nanum-*, -zcool-*), so CJK stays as in FACES.
_DIVERSE_EXTRA: tuple[Face, ...] = tuple(
    # --- sans
    _static(
        "Fira Sans",
        "sans",
        "fontpkg-fira-sans",
        ("FiraSans-Regular.ttf", "FiraSans-Medium.ttf"),
        LCG,
    )
    + _fp("Inter", "sans", "fontpkg-inter", "Inter[opsz,wght].ttf", _SANS_W, LCG)
    + _fp("Manrope", "sans", "fontpkg-manrope", "Manrope[wght].ttf", _SANS_W, LCG)
    + _fp("Sofia Sans", "sans", "fontpkg-sofia-sans", "SofiaSans[wght].ttf", _SANS_W, LCG)
    + _static("Play", "sans", "fontpkg-play", ("Play-Regular.ttf",), LCG)
    + _static("PT Sans", "sans", "fontpkg-pt-sans", ("PT_Sans-Web-Regular.ttf",), (LAT, CYR))
    + _fp("Montserrat", "sans", "fontpkg-montserrat", "Montserrat[wght].ttf", _SANS_W, (LAT, CYR))
    + _fp("Jost", "sans", "fontpkg-jost", "Jost[wght].ttf", _SANS_W, (LAT, CYR))
    + _fp("Arimo", "sans", "fontpkg-arimo", "Arimo[wght].ttf", (400, 600), LCG + ("hebrew",), True)
    + _fp("Assistant", "sans", "fontpkg-assistant", "Assistant[wght].ttf", _SANS_W, ("hebrew",))
    + _static(
        "Varela Round",
        "sans",
        "fontpkg-varela-round",
        ("VarelaRound-Regular.ttf",),
        ("hebrew",),
        True,
    )
    + _static(
        "Almarai",
        "sans",
        "fontpkg-almarai",
        ("Almarai-Light.ttf", "Almarai-Regular.ttf"),
        ("arabic",),
    )
    + _static(
        "Tajawal",
        "sans",
        "fontpkg-tajawal",
        ("Tajawal-Regular.ttf", "Tajawal-Medium.ttf"),
        ("arabic",),
        True,
    )
    + _static(
        "Poppins",
        "sans",
        "fontpkg-poppins",
        ("Poppins-Regular.ttf", "Poppins-Medium.ttf"),
        (LAT, "devanagari"),
    )
    + _static(
        "Rajdhani",
        "sans",
        "fontpkg-rajdhani",
        ("Rajdhani-Regular.ttf", "Rajdhani-Medium.ttf"),
        ("devanagari",),
        True,
    )
    + _static(
        "Chakra Petch",
        "sans",
        "fontpkg-chakra-petch",
        ("ChakraPetch-Regular.ttf", "ChakraPetch-Medium.ttf"),
        ("thai",),
        True,
    )
    # --- serif
    + _fp("Literata", "serif", "fontpkg-literata", "Literata[opsz,wght].ttf", (400, 600), LCG)
    + _fp("Lora", "serif", "fontpkg-lora", "Lora[wght].ttf", (400, 600), (LAT, CYR))
    + _static(
        "Spectral",
        "serif",
        "fontpkg-spectral",
        ("Spectral-Regular.ttf", "Spectral-Medium.ttf"),
        (LAT, CYR),
    )
    + _fp("Bitter", "serif", "fontpkg-bitter", "Bitter[wght].ttf", (400, 600), (LAT, CYR))
    + _fp(
        "Cormorant Garamond",
        "serif",
        "fontpkg-cormorant-garamond",
        "CormorantGaramond[wght].ttf",
        (500, 700),
        (LAT, CYR),
    )
    + _fp("Vollkorn", "serif", "fontpkg-vollkorn", "Vollkorn[wght].ttf", (400, 600), LCG, True)
    + _static(
        "Cardo",
        "serif",
        "fontpkg-cardo",
        ("Cardo-Regular.ttf", "Cardo-Bold.ttf"),
        (LAT, GRK, "hebrew"),
        True,
    )
    # --- mono
    + _fp("Fira Code", "mono", "fontpkg-fira-code", "FiraCode[wght].ttf", (400, 600), LCG)
    + _fp("Geist Mono", "mono", "fontpkg-geist-mono", "GeistMono[wght].ttf", (400, 600), (LAT, CYR))
    + _fp(
        "Roboto Mono", "mono", "fontpkg-roboto-mono", "RobotoMono[wght].ttf", (400, 600), LCG, True
    )
    # --- hand
    + _static("Great Vibes", "hand", "fontpkg-great-vibes", ("GreatVibes-Regular.ttf",), (LAT, CYR))
    + _fp(
        "Dancing Script",
        "hand",
        "fontpkg-dancing-script",
        "DancingScript[wght].ttf",
        (400, 700),
        (LAT,),
    )
    + _static(
        "Permanent Marker",
        "hand",
        "fontpkg-permanent-marker",
        ("PermanentMarker-Regular.ttf",),
        (LAT,),
    )
    + _static(
        "Shadows Into Light",
        "hand",
        "fontpkg-shadows-into-light",
        ("ShadowsIntoLight.ttf",),
        (LAT,),
    )
    + _static("Satisfy", "hand", "fontpkg-satisfy", ("Satisfy-Regular.ttf",), (LAT,))
    + _static("Yellowtail", "hand", "fontpkg-yellowtail", ("Yellowtail-Regular.ttf",), (LAT,), True)
    + _static("Zeyada", "hand", "fontpkg-zeyada", ("Zeyada.ttf",), (LAT,), True)
    # --- display: heavy weights of the new variable faces, plus display families
    + _static(
        "Fira Sans",
        "display",
        "fontpkg-fira-sans",
        ("FiraSans-ExtraBold.ttf", "FiraSans-Black.ttf"),
        LCG,
    )
    + _fp("Inter", "display", "fontpkg-inter", "Inter[opsz,wght].ttf", _DISPLAY_W, LCG)
    + _fp("Manrope", "display", "fontpkg-manrope", "Manrope[wght].ttf", (800,), LCG)
    + _fp("Sofia Sans", "display", "fontpkg-sofia-sans", "SofiaSans[wght].ttf", _DISPLAY_W, LCG)
    + _fp(
        "Montserrat",
        "display",
        "fontpkg-montserrat",
        "Montserrat[wght].ttf",
        _DISPLAY_W,
        (LAT, CYR),
    )
    + _fp("Exo 2", "display", "fontpkg-exo-2", "Exo2[wght].ttf", _DISPLAY_W, (LAT, CYR))
    + _fp(
        "Playfair Display",
        "display",
        "fontpkg-playfair-display",
        "PlayfairDisplay[wght].ttf",
        _DISPLAY_W,
        (LAT, CYR),
    )
    + _static(
        "Press Start 2P", "display", "fontpkg-press-start-2p", ("PressStart2P-Regular.ttf",), LCG
    )
    + _fp("Comfortaa", "display", "fontpkg-comfortaa", "Comfortaa[wght].ttf", (600, 700), LCG)
    + _static("Russo One", "display", "fontpkg-russo-one", ("RussoOne-Regular.ttf",), (LAT, CYR))
    + _fp(
        "Unbounded", "display", "fontpkg-unbounded", "Unbounded[wght].ttf", (700, 900), (LAT, CYR)
    )
    + _fp(
        "Yanone Kaffeesatz",
        "display",
        "fontpkg-yanone-kaffeesatz",
        "YanoneKaffeesatz[wght].ttf",
        (500, 700),
        (LAT, CYR),
    )
    + _fp("Arimo", "display", "fontpkg-arimo", "Arimo[wght].ttf", (700,), LCG + ("hebrew",), True)
    + _fp("Assistant", "display", "fontpkg-assistant", "Assistant[wght].ttf", (800,), ("hebrew",))
    + _fp(
        "Fredoka", "display", "fontpkg-fredoka", "Fredoka[wdth,wght].ttf", (600, 700), ("hebrew",)
    )
    + _static("Almarai", "display", "fontpkg-almarai", ("Almarai-ExtraBold.ttf",), ("arabic",))
    + _static(
        "Tajawal",
        "display",
        "fontpkg-tajawal",
        ("Tajawal-ExtraBold.ttf", "Tajawal-Black.ttf"),
        ("arabic",),
        True,
    )
    + _static(
        "Poppins",
        "display",
        "fontpkg-poppins",
        ("Poppins-ExtraBold.ttf", "Poppins-Black.ttf"),
        (LAT, "devanagari"),
    )
    + _fp("Baloo 2", "display", "fontpkg-baloo-2", "Baloo2[wght].ttf", (700, 800), ("devanagari",))
    + _fp("Teko", "display", "fontpkg-teko", "Teko[wght].ttf", (500, 700), ("devanagari",))
    + _static(
        "Rajdhani", "display", "fontpkg-rajdhani", ("Rajdhani-Bold.ttf",), ("devanagari",), True
    )
    + _static(
        "Chakra Petch",
        "display",
        "fontpkg-chakra-petch",
        ("ChakraPetch-Bold.ttf",),
        ("thai",),
        True,
    )
)

# Every table, by name. "default" is FACES, the table every cached dataset and zoo model
# was drawn from; the others are opt-in through ``DataConfig.fonts``.
TABLES: dict[str, tuple[Face, ...]] = {"default": FACES, "diverse": FACES + _DIVERSE_EXTRA}


def table_faces(table: str = "default") -> tuple[Face, ...]:
    """The faces of font table ``table`` (a key of ``TABLES``), training and held-out."""
    check_name("table", table, tuple(TABLES))
    return TABLES[table]


def families(table: str = "default") -> tuple[str, ...]:
    """The family names of ``table``, in table order: what ``Split.family`` ids index."""
    return tuple(dict.fromkeys(f.family for f in table_faces(table)))


# What would fill a cell the table leaves empty (named in the error message).
_FILLERS = {
    ("devanagari", "serif"): "fontpkg-noto-serif-devanagari",
    ("thai", "serif"): "fontpkg-noto-serif-thai",
    ("chinese", "serif"): "fontpkg-noto-serif-sc",
    ("japanese", "serif"): "fontpkg-noto-serif-jp",
    ("korean", "serif"): "fontpkg-noto-serif-kr",
    ("korean", "hand"): "fontpkg-nanum-pen-script",
    ("japanese", "hand"): "fontpkg-yomogi",
    ("chinese", "hand"): "fontpkg-ma-shan-zheng",
    ("arabic", "hand"): "fontpkg-aref-ruqaa",
    ("hebrew", "hand"): "fontpkg-karantina",
    ("greek", "hand"): "fontpkg-comfortaa",
    ("thai", "hand"): "fontpkg-itim",
}


class FontCoverageError(ValueError):
    """A (script, style) cell has no face that covers it."""


class FontPackageError(FontCoverageError):
    """A pinned font package is missing or one of its files cannot be loaded.

    Never skipped: a cell that silently lost its faces would render (and cache)
    a different dataset under the same name.
    """


@functools.cache
def font_path(face: Face) -> Path:
    """Absolute path of a face's file inside its installed package."""
    spec = importlib.util.find_spec(face.module)
    if spec is None or not spec.submodule_search_locations:
        whole = "reinstall scriptlab" if face in FACES else "install scriptlab[diverse-fonts]"
        raise FontPackageError(
            f"font package {face.package!r} (for {face.family}) is not installed; "
            f"`pip install {face.package}` or {whole}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / face.file
    if not path.exists():
        raise FontPackageError(f"{face.package} has no file {face.file!r}")
    return path


@functools.cache
def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def file_digests(faces) -> dict[str, str]:
    """{package/file: sha256 prefix} of the font files behind ``faces``: what a dataset was drawn with."""
    return {f"{f.package}/{f.file}": _file_digest(font_path(f)) for f in faces}


@functools.cache
def _cmap(path: Path) -> frozenset[int]:
    from fontTools.ttLib import TTFont

    with TTFont(path, lazy=True) as font:
        # Only the code points are needed. Plain placeholder glyph names spare fontTools
        # deriving names (from 'post' or the cmap itself): 3.5x faster over the 51 fonts,
        # the same code points (tests/test_fonts.py checks every face against getBestCmap).
        font.setGlyphOrder([f"g{i}" for i in range(font["maxp"].numGlyphs)])
        return frozenset(font.getBestCmap())


def covers(face: Face, text: str) -> bool:
    """True when every non-space character of ``text`` is in the face's cmap."""
    path = font_path(face)
    try:
        cmap = _cmap(path)
    except Exception as err:  # fontTools raises many types on a damaged file
        raise FontPackageError(
            f"font file {path} of package {face.package!r} cannot be loaded ({err}); "
            f"reinstall it with `pip install --force-reinstall {face.package}`"
        ) from err
    return all(ord(ch) in cmap for ch in text if not ch.isspace())


@functools.cache
def words_for(face: Face, script: str) -> tuple[str, ...]:
    """The words of ``script`` that ``face`` renders without a missing glyph."""
    return tuple(w for w in WORDS[script] if covers(face, w))


# A face is listed for a script only when it renders most of that script's words.
MIN_WORD_COVERAGE = 0.75


def faces_for(
    script: str, style: str, *, heldout: bool = False, table: str = "default"
) -> tuple[Face, ...]:
    """Faces of ``table`` that render (script, style), from the training or the held-out pool.

    Raises:
      FontCoverageError: when the cell is empty, naming it and the package that
        would fill it.
    """
    check_name("script", script, SCRIPTS)
    check_name("style", style, STYLES)
    out = tuple(
        f
        for f in table_faces(table)
        if f.style == style
        and script in f.scripts
        and f.heldout == heldout
        and len(words_for(f, script)) >= MIN_WORD_COVERAGE * len(WORDS[script])
    )
    if not out:
        pool = "held-out" if heldout else "training"
        filler = _FILLERS.get((script, style), f"a fontpkg-* package with {script} {style} glyphs")
        raise FontCoverageError(
            f"no {pool} font covers the cell (script={script!r}, style={style!r}); "
            f"add a face from {filler!r} to the {table!r} table in scriptlab.fonts.TABLES"
        )
    return out


def styles_for(script: str, *, heldout: bool = False, table: str = "default") -> tuple[str, ...]:
    """The styles that have at least one covering face of ``table`` for ``script``."""
    out = []
    for style in STYLES:
        try:
            faces_for(script, style, heldout=heldout, table=table)
        except FontPackageError:
            raise  # a broken install, not an uncovered cell
        except FontCoverageError:
            continue
        out.append(style)
    return tuple(out)


def font_table(table: str = "default") -> list[dict]:
    """One row per family and style of ``table``: scripts covered, weights, package, pool."""
    rows: dict[tuple[str, str], dict] = {}
    for f in table_faces(table):
        row = rows.setdefault(
            (f.family, f.style),
            {
                "family": f.family,
                "style": f.style,
                "package": f.package,
                "scripts": [],
                "weights": [],
                "heldout": f.heldout,
            },
        )
        row["weights"].append(f.weight if f.weight is not None else Path(f.file).stem)
        for s in f.scripts:
            if s not in row["scripts"] and len(words_for(f, s)) >= MIN_WORD_COVERAGE * len(
                WORDS[s]
            ):
                row["scripts"].append(s)
    return list(rows.values())
