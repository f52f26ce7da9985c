"""PNG line charts for scripts/study.py, with the standard library only: a raster canvas, a
3x5 pixel font, and panels of curves with error bars (the paper's Figs. 6-9 in form).
"""
from __future__ import annotations

import math
import struct
import zlib

# 3x5 glyphs, rows top to bottom, bit 2 = left column (upper case is drawn as lower case).
GLYPHS = {
    "0": (7, 5, 5, 5, 7), "1": (2, 6, 2, 2, 7), "2": (7, 1, 7, 4, 7), "3": (7, 1, 7, 1, 7), "4": (5, 5, 7, 1, 1),
    "5": (7, 4, 7, 1, 7), "6": (7, 4, 7, 5, 7), "7": (7, 1, 1, 1, 1), "8": (7, 5, 7, 5, 7), "9": (7, 5, 7, 1, 7),
    "a": (0, 6, 3, 5, 7), "b": (4, 4, 7, 5, 7), "c": (0, 7, 4, 4, 7), "d": (1, 1, 7, 5, 7), "e": (0, 7, 7, 4, 7),
    "f": (3, 4, 6, 4, 4), "g": (0, 7, 5, 7, 1), "h": (4, 4, 7, 5, 5), "i": (2, 0, 2, 2, 2), "j": (1, 0, 1, 5, 7),
    "k": (4, 5, 6, 5, 5), "l": (6, 2, 2, 2, 7), "m": (0, 7, 7, 5, 5), "n": (0, 6, 5, 5, 5), "o": (0, 7, 5, 5, 7),
    "p": (0, 7, 5, 7, 4), "q": (0, 7, 5, 7, 1), "r": (0, 5, 6, 4, 4), "s": (0, 7, 6, 3, 7), "t": (2, 7, 2, 2, 3),
    "u": (0, 5, 5, 5, 7), "v": (0, 5, 5, 5, 2), "w": (0, 5, 5, 7, 7), "x": (0, 5, 2, 2, 5), "y": (0, 5, 7, 1, 7),
    "z": (0, 7, 3, 6, 7), ".": (0, 0, 0, 0, 2), "-": (0, 0, 7, 0, 0), "+": (0, 2, 7, 2, 0), ":": (0, 2, 0, 2, 0),
    "=": (0, 7, 0, 7, 0), "/": (1, 1, 2, 4, 4), "(": (2, 4, 4, 4, 2), ")": (2, 1, 1, 1, 2), ",": (0, 0, 0, 2, 4),
    "_": (0, 0, 0, 0, 7), "%": (5, 1, 2, 4, 5), "^": (2, 5, 0, 0, 0), " ": (0, 0, 0, 0, 0),
}
COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (23, 190, 207),
           (140, 86, 75), (227, 119, 194)]


class Canvas:
    def __init__(self, width: int, height: int):
        self.w, self.h = width, height
        self.px = bytearray(b"\xff" * (width * height * 3))

    def set(self, x: int, y: int, c) -> None:
        if 0 <= x < self.w and 0 <= y < self.h:
            i = (y * self.w + x) * 3
            self.px[i:i + 3] = bytes(c)

    def fill(self, x: int, y: int, w: int, h: int, c) -> None:
        for yy in range(y, y + h):
            for xx in range(x, x + w):
                self.set(xx, yy, c)

    def line(self, x0: float, y0: float, x1: float, y1: float, c, width: int = 1, dash: int = 0) -> None:
        steps = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
        for i in range(steps + 1):
            if dash and (i // dash) % 2:
                continue
            f = i / steps
            self.fill(round(x0 + f * (x1 - x0)) - width // 2, round(y0 + f * (y1 - y0)) - width // 2, width, width, c)

    def text(self, x: int, y: int, s: str, c=(40, 40, 40), scale: int = 2) -> None:
        for ch in s.lower():
            for r, bits in enumerate(GLYPHS.get(ch, GLYPHS[" "])):
                for col in range(3):
                    if bits & (4 >> col):
                        self.fill(x + col * scale, y + r * scale, scale, scale, c)
            x += 4 * scale

    @staticmethod
    def text_width(s: str, scale: int = 2) -> int:
        return len(s) * 4 * scale

    def png(self) -> bytes:
        raw = b"".join(b"\x00" + bytes(self.px[y * self.w * 3:(y + 1) * self.w * 3]) for y in range(self.h))

        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", self.w, self.h, 8, 2, 0, 0, 0)) +
                chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1e-3
    raw = (hi - lo) / count
    step = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * step:
            step *= m
            break
    first = math.ceil(lo / step) * step
    return [first + k * step for k in range(int((hi - first) / step + 1e-9) + 1)]


def tick_text(v: float) -> str:
    return f"{v:.3g}" if v != 0 else "0"


def panel(c: Canvas, x0: int, y0: int, w: int, h: int, title: str, xlabel: str, series: list[dict],
          log_x: bool, references: list[dict]) -> None:
    """series: {name, points: [(x, mean, sd)]}; references: {name, value} drawn dashed."""
    left, bottom, top, right = 70, 46, 26, 12
    xs = [p[0] for s in series for p in s["points"]]
    ys = [v for s in series for p in s["points"] for v in (p[1] - p[2], p[1] + p[2])] + [r["value"] for r in references]
    if not xs:
        c.text(x0 + left, y0 + h // 2, "no scores yet")
        return
    fx = (lambda v: math.log10(v)) if log_x and min(xs) > 0 else (lambda v: v)
    lx, hx = fx(min(xs)), fx(max(xs))
    if hx == lx:
        lx, hx = lx - 1, hx + 1
    pad = 0.05 * (hx - lx)
    lx, hx = lx - pad, hx + pad
    ly, hy = min(ys), max(ys)
    margin = 0.08 * (hy - ly) if hy > ly else 0.05
    ly, hy = ly - margin, hy + margin
    pw, ph = w - left - right, h - top - bottom

    def X(v: float) -> float:
        return x0 + left + (fx(v) - lx) / (hx - lx) * pw

    def Y(v: float) -> float:
        return y0 + top + (hy - v) / (hy - ly) * ph
    grid, axis = (228, 228, 228), (40, 40, 40)
    for t in nice_ticks(ly, hy):
        c.line(x0 + left, Y(t), x0 + left + pw, Y(t), grid)
        c.text(x0 + left - 6 - Canvas.text_width(tick_text(t)), int(Y(t)) - 5, tick_text(t))
    xticks = sorted(set(xs))
    if len(xticks) > 12:
        xticks = xticks[::math.ceil(len(xticks) / 12)]
    for t in xticks:
        c.line(X(t), y0 + top, X(t), y0 + top + ph, grid)
        c.text(int(X(t)) - Canvas.text_width(tick_text(t)) // 2, y0 + top + ph + 8, tick_text(t))
    c.line(x0 + left, y0 + top, x0 + left, y0 + top + ph, axis)
    c.line(x0 + left, y0 + top + ph, x0 + left + pw, y0 + top + ph, axis)
    c.text(x0 + left, y0 + 6, title)
    c.text(x0 + left + pw // 2 - Canvas.text_width(xlabel) // 2, y0 + h - 16, xlabel)
    for j, r in enumerate(references):
        colour = (120, 120, 120)
        c.line(x0 + left, Y(r["value"]), x0 + left + pw, Y(r["value"]), colour, 1, dash=6)
        c.text(x0 + left + pw - Canvas.text_width(r["name"]) - 4, int(Y(r["value"])) - 14, r["name"], colour)
    for j, s in enumerate(series):
        colour = COLOURS[j % len(COLOURS)]
        pts = sorted(s["points"])
        for a, b in zip(pts, pts[1:]):
            c.line(X(a[0]), Y(a[1]), X(b[0]), Y(b[1]), colour, 2)
        for x, m, sd in pts:
            if sd > 0:
                c.line(X(x), Y(m - sd), X(x), Y(m + sd), colour)
                c.line(X(x) - 4, Y(m - sd), X(x) + 4, Y(m - sd), colour)
                c.line(X(x) - 4, Y(m + sd), X(x) + 4, Y(m + sd), colour)
            c.fill(int(X(x)) - 3, int(Y(m)) - 3, 7, 7, colour)


def chart(panels: list[dict], xlabel: str, log_x: bool, caption: str) -> bytes:
    """panels: {title, series, references}; side by side, a shared legend and caption below."""
    pw, ph = 460, 320
    names = []
    for p in panels:
        for s in p["series"]:
            if s["name"] not in names:
                names.append(s["name"])
    legend_h = 22 * ((len(names) + 3) // 4) + 34
    c = Canvas(pw * len(panels), ph + legend_h)
    for k, p in enumerate(panels):
        ordered = sorted(p["series"], key=lambda s: names.index(s["name"]))
        coloured = [dict(s) for s in ordered]
        # colours follow the legend order, whatever the panel holds
        panel_c = Canvas(pw, ph)
        for s in coloured:
            s["_colour"] = names.index(s["name"])
        _panel_with_colours(panel_c, pw, ph, p["title"], xlabel, coloured, log_x, p.get("references", []))
        for y in range(ph):
            row = panel_c.px[y * pw * 3:(y + 1) * pw * 3]
            start = (y * c.w + k * pw) * 3
            c.px[start:start + pw * 3] = row
    for j, name in enumerate(names):
        x, y = 20 + (j % 4) * (c.w // 4), ph + 8 + 22 * (j // 4)
        c.fill(x, y + 2, 14, 6, COLOURS[j % len(COLOURS)])
        c.text(x + 20, y, name)
    c.text(20, c.h - 16, caption, (90, 90, 90))
    return c.png()


def _panel_with_colours(c: Canvas, w: int, h: int, title: str, xlabel: str, series: list[dict], log_x: bool,
                        references: list[dict]) -> None:
    # panel() colours series by position; pad with empty series so each keeps its legend colour.
    slots = [{"name": "", "points": []} for _ in range(max([s["_colour"] for s in series], default=-1) + 1)]
    for s in series:
        slots[s["_colour"]] = s
    panel(c, 0, 0, w, h, title, xlabel, slots, log_x, references)
