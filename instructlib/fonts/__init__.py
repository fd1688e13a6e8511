"""Course tool: fonts — make matplotlib draw Chinese (an installed CJK font, else the shipped subset).

Floor 0, so every chapter's plotting code (chapter 04's verb-noun plot, the setup cell through
``instructlib.course.setup_notebook``) uses one choice of font.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from instructlib import REPO

# Installed fonts that draw simplified Chinese, best first (Linux, Windows, macOS names); the shipped
# subset (tools/make_cjk_font.py) is the fallback, so a bare Colab or CI machine draws Chinese too.
CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "Source Han Sans CN",
             "WenQuanYi Micro Hei", "WenQuanYi Zen Hei", "Microsoft YaHei", "PingFang SC",
             "Hiragino Sans GB", "Heiti SC", "STHeiti", "SimHei", "Noto Sans CJK JP", "Noto Sans CJK TC",
             "Droid Sans Fallback", "Arial Unicode MS")
SHIPPED_CJK_FONT = Path(__file__).resolve().parent / "InstructlibSansCJKsc-Regular.otf"
CJK_FONT_FIX = (f"reinstall the course library, which ships one (pip install --force-reinstall --no-deps "
                f'"instructlib @ git+https://github.com/{REPO}.git"), or install a system font '
                "(Debian/Ubuntu: sudo apt-get install fonts-noto-cjk; macOS and Windows have one)")
_cjk_state: dict[str, Any] = {}


def select_cjk_font(installed: bool = True, shipped: Path | None = SHIPPED_CJK_FONT) -> str | None:
    """Make matplotlib draw Chinese; return the font family it will use for it, or None.

    An installed CJK font (``installed``: look among matplotlib's known fonts, see CJK_FONTS) wins;
    otherwise ``shipped`` is registered with matplotlib. The family goes *after* the usual one in
    ``font.family``, so Latin text keeps its look and matplotlib (>= 3.6) takes only the glyphs the
    first font lacks from it. With no font at all: one warning that names the fix, then None.
    """
    import matplotlib
    from matplotlib import font_manager

    known = {f.name for f in font_manager.fontManager.ttflist} if installed else set()
    family = next((name for name in CJK_FONTS if name in known), None)
    if family is None and shipped is not None and Path(shipped).is_file():
        font_manager.fontManager.addfont(str(shipped))
        family = font_manager.FontProperties(fname=str(shipped)).get_name()
    if family is None:
        if not _cjk_state.get("warned"):
            _cjk_state["warned"] = True
            warnings.warn("no font that can draw Chinese was found: plots will show boxes instead of 中文. "
                          f"Fix: {CJK_FONT_FIX}", stacklevel=2)
        return None
    families = list(matplotlib.rcParams["font.family"])
    if family not in families:
        matplotlib.rcParams["font.family"] = families + [family]
    _cjk_state["family"] = family
    return family
