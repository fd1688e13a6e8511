"""Build instructlib/fonts/InstructlibSansCJKsc-Regular.otf, the Chinese font the course ships for plots.

It is a subset of Noto Sans CJK SC Regular (SIL Open Font License 1.1, (c) Adobe): every character of
GB 2312 (the 6,763 common simplified hanzi and 682 symbols), ASCII and Latin-1, CJK punctuation,
full-width forms, and any other CJK character found in the course's notebooks, library and seeds.
The subset is renamed (OFL section 3 asks modified versions to say so) and keeps the copyright and
licence name records. About 3 MB instead of 16 MB.

    python tools/make_cjk_font.py path/to/NotoSansCJKsc-Regular.otf

The source file is, for example, in the PyPI wheel `mpl-font` (mpl_font/fonts/noto/) or Debian's
`fonts-noto-cjk` (a .ttc: pass --font-number for the SC face). Deterministic for a given source.
"""
from __future__ import annotations

import argparse
import glob
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "instructlib" / "fonts" / "InstructlibSansCJKsc-Regular.otf"
FAMILY = "Instructlib Sans CJK SC"
POSTSCRIPT = "InstructlibSansCJKsc-Regular"
SCAN = ("notebooks/*.ipynb", "solutions/*.ipynb", "instructlib/**/*.py", "instructlib/**/*.yaml",
        "instructlib/**/*.json", "instructlib/**/*.jsonl", "../shared/seeds/**/*")


def gb2312() -> set[str]:
    chars = set()
    for hi in range(0xA1, 0xF8):
        for lo in range(0xA1, 0xFF):
            try:
                chars.add(bytes([hi, lo]).decode("gb2312"))
            except UnicodeDecodeError:
                pass
    return chars


def course_chars() -> set[str]:
    found = set()
    for pattern in SCAN:
        for name in glob.glob(str(ROOT / pattern), recursive=True):
            try:
                found.update(ch for ch in Path(name).read_text(encoding="utf-8") if 0x2E80 <= ord(ch) <= 0x9FFF)
            except (UnicodeDecodeError, IsADirectoryError, OSError):
                continue
    return found


def codepoints() -> list[int]:
    ranges = [range(0x20, 0x7F), range(0xA0, 0x100), range(0x2000, 0x2070), range(0x3000, 0x3040),
              range(0xFF00, 0xFFF0)]
    points = {cp for r in ranges for cp in r} | {ord(c) for c in gb2312() | course_chars()}
    return sorted(points)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="NotoSansCJKsc-Regular.otf (or a .ttc with --font-number)")
    parser.add_argument("--font-number", type=int, default=0)
    parser.add_argument("--out", type=Path, default=TARGET)
    args = parser.parse_args(argv)
    from fontTools import subset
    from fontTools.ttLib import TTFont

    font = TTFont(args.source, fontNumber=args.font_number, lazy=False, recalcTimestamp=False)
    options = subset.Options()
    options.layout_features = ["*"]
    options.name_IDs = [0, 1, 2, 3, 4, 5, 6, 13, 14]
    options.hinting = False
    options.desubroutinize = False
    sub = subset.Subsetter(options)
    sub.populate(unicodes=codepoints())
    sub.subset(font)
    names = font["name"]
    version = names.getDebugName(5) or ""
    for record in list(names.names):
        if record.nameID in (1, 4, 16, 18, 21):
            names.removeNames(nameID=record.nameID)
    for pid, eid, lid in ((3, 1, 0x409), (1, 0, 0)):
        names.setName(FAMILY, 1, pid, eid, lid)
        names.setName("Regular", 2, pid, eid, lid)
        names.setName(f"{FAMILY} Regular", 4, pid, eid, lid)
        names.setName(POSTSCRIPT, 6, pid, eid, lid)
        names.setName(f"{POSTSCRIPT}; subset of Noto Sans CJK SC {version}", 3, pid, eid, lid)
    if "CFF " in font:
        cff = font["CFF "].cff
        cff.fontNames = [POSTSCRIPT]
        top = cff.topDictIndex[0]
        top.FullName, top.FamilyName = f"{FAMILY} Regular", FAMILY
    args.out.parent.mkdir(parents=True, exist_ok=True)
    font.save(args.out)
    print(f"{args.out}: {args.out.stat().st_size / 1e6:.2f} MB, {len(codepoints())} code points requested")
    return 0


if __name__ == "__main__":
    sys.exit(main())
