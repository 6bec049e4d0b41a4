#!/usr/bin/env python3
"""Independent reference for image decoding and vision preprocessing (spec §4.3), used by tests/unit/test_image.c.

  vision_preproc_ref.py --make DIR     test images, what PIL decodes them to and numpy patches (DIR/manifest.txt)
  vision_preproc_ref.py --corpus DIR   the small seed files of tests/fuzz/corpus/fuzz_image

Decoding is PIL's: Image.open, then (image with alpha or a tRNS entry) alpha_composite onto opaque white, then
convert("RGB"). Preprocessing is written here from the spec in numpy float32: smart_resize in plain Python, the bilinear
resize of torch's F.interpolate(align_corners=False, antialias=False) as whole-array gathers, (x - mean) / std, and the
patch layout as one reshape/transpose (rows (bh, bw, mh, mw), each (c, tt, py, px)). Some PNGs are written by a small
encoder here (16-bit, 1/2/4-bit, tRNS keys, Adam7 interlacing), the others by PIL's own encoders.

manifest.txt lines:
  decode NAME W H                           NAME.img decodes to NAME.rgb (uint8 [H][W][3])
  preproc NAME IMG P M T MIN MAX m0 m1 m2 s0 s1 s2 OH OW
                                            IMG preprocessed to NAME.f32 (float32 [N][3*T*P*P]); OH = OW = 0: refused
  resize H W FACTOR MIN MAX OH OW           smart_resize only (0 0: refused)
"""
import io
import math
import os
import random
import struct
import sys
import zlib

try:
    import numpy as np
    from PIL import Image
except ImportError as e:  # python3-numpy and python3-pil come from scripts/deps.sh
    sys.exit(f"vision_preproc_ref.py: {e} (install python3-numpy and python3-pil: scripts/deps.sh)")

MEAN = (123.675, 116.28, 103.53)  # spec §4.3 step 4
STD = (58.395, 57.12, 57.375)


# ---- a minimal PNG encoder, for the kinds PIL cannot write ----

ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def scanlines(a, depth):
    """Filter-0 scanlines of samples a [h][w][ch]."""
    h, w, ch = a.shape
    if depth == 16:
        rows = a.astype(">u2").reshape(h, w * ch).view(np.uint8)
    elif depth == 8:
        rows = a.astype(np.uint8).reshape(h, w * ch)
    else:  # 1/2/4-bit, one channel: pack MSB first
        per = 8 // depth
        pad = (-w) % per
        s = np.concatenate([a[:, :, 0], np.zeros((h, pad), a.dtype)], 1).astype(np.uint8).reshape(h, -1, per)
        rows = np.zeros(s.shape[:2], np.uint8)
        for i in range(per):
            rows |= s[:, :, i] << (8 - depth * (i + 1))
    return b"".join(b"\x00" + r.tobytes() for r in rows)


def png(a, depth, ctype, interlace=False, plte=None, trns=None):
    a = a if a.ndim == 3 else a[:, :, None]
    h, w = a.shape[:2]
    if interlace:
        raw = b"".join(scanlines(a[y0::dy, x0::dx], depth) for x0, y0, dx, dy in ADAM7 if a[y0::dy, x0::dx].size)
    else:
        raw = scanlines(a, depth)
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, int(interlace)))
    if plte is not None:
        out += chunk(b"PLTE", bytes(np.asarray(plte, np.uint8).reshape(-1)))
    if trns is not None:
        out += chunk(b"tRNS", trns)
    return out + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def pil_save(im, fmt, **kw):
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


# ---- the reference decode and preprocessing ----

def pil_rgb(data):
    im = Image.open(io.BytesIO(data))
    im.load()
    if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def smart_resize(h, w, factor, min_pixels, max_pixels):
    """Spec §4.3 step 2, in Python's own arithmetic; None when refused."""
    if min(h, w) < factor:
        if h < w:
            h, w = factor, int(w * factor / h)
        else:
            h, w = int(h * factor / w), factor
    elif max(h, w) / min(h, w) > 200:
        return None
    hb, wb = round(h / factor) * factor, round(w / factor) * factor
    if hb * wb > max_pixels:
        beta = math.sqrt(h * w / max_pixels)
        hb, wb = math.floor(h / beta / factor) * factor, math.floor(w / beta / factor) * factor
    elif hb * wb < min_pixels:
        beta = math.sqrt(min_pixels / (h * w))
        hb, wb = math.ceil(h * beta / factor) * factor, math.ceil(w * beta / factor) * factor
    if hb <= 0 or wb <= 0:  # Python would fail later, in the resize
        return None
    return hb, wb


def taps(n_in, n_out):
    """Indices and weights of one axis, float32 throughout (torch's CPU bilinear, align_corners=False)."""
    d = np.arange(n_out)
    if n_in == n_out:
        return d, d, np.ones(n_out, np.float32), np.zeros(n_out, np.float32)
    f32 = np.float32
    scale = f32(n_in) / f32(n_out)
    src = scale * (d.astype(f32) + f32(0.5)) - f32(0.5)
    src = np.maximum(src, f32(0)).astype(f32)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    l1 = np.clip(src - i0.astype(f32), f32(0), f32(1)).astype(f32)
    return i0, i1, (f32(1) - l1).astype(f32), l1


def preprocess(rgb, p, m, t, min_pixels, max_pixels, mean, std):
    size = smart_resize(rgb.shape[0], rgb.shape[1], p * m, min_pixels, max_pixels)
    if size is None:
        return None, (0, 0)
    oh, ow = size
    img = rgb.astype(np.float32).transpose(2, 0, 1)  # (C, H, W), 0..255
    y0, y1, hy0, hy1 = taps(img.shape[1], oh)
    x0, x1, wx0, wx1 = taps(img.shape[2], ow)

    def across(rows):  # interpolate along W first, as torch's kernel nests it
        return rows[:, :, x0] * wx0 + rows[:, :, x1] * wx1

    out = across(img[:, y0, :]) * hy0[None, :, None] + across(img[:, y1, :]) * hy1[None, :, None]
    out = (out - np.asarray(mean, np.float32)[:, None, None]) / np.asarray(std, np.float32)[:, None, None]
    assert out.dtype == np.float32
    gh, gw = oh // p, ow // p
    x = np.repeat(out[None], t, axis=0).reshape(t, 3, gh // m, m, p, gw // m, m, p)
    # axes (tt, c, bh, mh, py, bw, mw, px) -> (bh, bw, mh, mw, c, tt, py, px)
    x = x.transpose(2, 5, 3, 6, 1, 0, 4, 7)
    return np.ascontiguousarray(x).reshape(gh * gw, 3 * t * p * p), size


# ---- test images ----

def decode_cases(rng):
    """name -> encoded bytes, one per kind of file the decoder must get right."""
    u8 = lambda *s: rng.integers(0, 256, s, dtype=np.uint8)  # noqa: E731
    c = {}
    c["png_rgb8"] = pil_save(Image.fromarray(u8(23, 37, 3)), "PNG")
    # every (value, alpha) pair: rows are the value, columns the alpha
    v, a = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    rgba = np.stack([v, 255 - v, (v * 7) % 256, a], -1).astype(np.uint8)
    c["png_rgba8_all_alpha"] = pil_save(Image.fromarray(rgba, "RGBA"), "PNG")
    c["png_rgba8"] = pil_save(Image.fromarray(u8(19, 31, 4), "RGBA"), "PNG")
    c["png_la8"] = pil_save(Image.fromarray(u8(17, 13, 2), "LA"), "PNG")
    c["png_gray8"] = pil_save(Image.fromarray(u8(15, 21), "L"), "PNG")
    c["png_gray1_pil"] = pil_save(Image.fromarray(u8(9, 14) > 127).convert("1"), "PNG")
    pal = u8(20, 3)
    idx = rng.integers(0, 20, (14, 11))
    c["png_pal8_trns"] = png(idx, 8, 3, plte=pal, trns=bytes(u8(12)))
    c["png_pal8"] = png(idx, 8, 3, plte=pal)
    c["png_pal4_trns_adam7"] = png(rng.integers(0, 16, (13, 11)), 4, 3, True, plte=u8(16, 3), trns=bytes(u8(5)))
    c["png_pal2"] = png(rng.integers(0, 4, (5, 7)), 2, 3, plte=u8(4, 3))
    c["png_pal1_trns"] = png(rng.integers(0, 2, (5, 9)), 1, 3, plte=u8(2, 3), trns=b"\x00")
    g2 = rng.integers(0, 4, (6, 9))
    c["png_gray2"] = png(g2, 2, 0)
    c["png_gray2_key85"] = png(g2, 2, 0, trns=struct.pack(">H", 85))  # PIL compares the scaled value
    c["png_gray2_key1"] = png(g2, 2, 0, trns=struct.pack(">H", 1))  # ... so this key never matches
    c["png_gray4_key"] = png(rng.integers(0, 16, (7, 5)), 4, 0, trns=struct.pack(">H", 0x77))
    c["png_gray1_key0"] = png(rng.integers(0, 2, (4, 11)), 1, 0, trns=struct.pack(">H", 0))
    g8 = u8(9, 10)
    c["png_gray8_key"] = png(g8, 8, 0, trns=struct.pack(">H", int(g8[3, 4])))
    g16 = rng.integers(0, 65536, (8, 9)).astype(np.uint16)
    g16[0, :6] = [0, 1, 255, 256, 65535, 300]
    c["png_gray16"] = png(g16, 16, 0)
    c["png_gray16_key_hi"] = png(g16, 16, 0, trns=struct.pack(">H", 300))
    c["png_gray16_key_lo"] = png(g16, 16, 0, trns=struct.pack(">H", 255))
    c["png_gray16_adam7"] = png(g16, 16, 0, True)
    rgb8 = u8(7, 8, 3)
    c["png_rgb8_key"] = png(rgb8, 8, 2, trns=struct.pack(">HHH", *map(int, rgb8[2, 3])))
    c["png_rgb8_adam7"] = png(u8(13, 11, 3), 8, 2, True)
    rgb16 = rng.integers(0, 65536, (6, 7, 3)).astype(np.uint16)
    rgb16[1, 1] = [0x0400, 0x05FF, 0x0612]  # high bytes (4, 5, 6): PIL's key compare matches here
    rgb16[1, 2] = [4, 5, 6]  # the key's own 16-bit value: PIL does not match it
    c["png_rgb16"] = png(rgb16, 16, 2)
    c["png_rgb16_key"] = png(rgb16, 16, 2, trns=struct.pack(">HHH", 4, 5, 6))
    c["png_rgba16"] = png(rng.integers(0, 65536, (5, 6, 4)).astype(np.uint16), 16, 6)
    c["png_la16_adam7"] = png(rng.integers(0, 65536, (9, 10, 2)).astype(np.uint16), 16, 4, True)
    c["png_rgba8_adam7_1x1"] = png(u8(1, 1, 4), 8, 6, True)
    c["png_rgba8_adam7_3x2"] = png(u8(2, 3, 4), 8, 6, True)
    # JPEG: smooth content (so chroma subsampling and the IDCT matter), odd sizes for the upsampling edges
    yy, xx = np.mgrid[0:29, 0:41]
    smooth = np.stack([(xx * 6) % 256, (yy * 8) % 256, ((xx + yy) * 3) % 256], -1).astype(np.uint8)
    noisy = np.clip(smooth.astype(int) + rng.integers(-20, 21, smooth.shape), 0, 255).astype(np.uint8)
    c["jpg_420"] = pil_save(Image.fromarray(noisy), "JPEG", quality=90)
    c["jpg_422"] = pil_save(Image.fromarray(noisy), "JPEG", quality=75, subsampling=1)
    c["jpg_444"] = pil_save(Image.fromarray(noisy), "JPEG", quality=95, subsampling=0)
    c["jpg_progressive"] = pil_save(Image.fromarray(noisy), "JPEG", quality=85, progressive=True)
    c["jpg_gray"] = pil_save(Image.fromarray(noisy[:, :, 0], "L"), "JPEG", quality=80)
    c["jpg_cmyk"] = pil_save(Image.fromarray(u8(13, 17, 4), "CMYK"), "JPEG", quality=90)
    cmyk = c["jpg_cmyk"]
    i = cmyk.find(b"\xff\xee")  # without the Adobe marker PIL still reads it inverted
    c["jpg_cmyk_no_adobe"] = cmyk[:i] + cmyk[i + 2 + int.from_bytes(cmyk[i + 2:i + 4], "big"):]
    # WebP
    alpha_img = np.concatenate([noisy, ((xx * 255) // 40).astype(np.uint8)[:, :, None]], -1)
    c["webp_lossless_rgba"] = pil_save(Image.fromarray(alpha_img, "RGBA"), "WEBP", lossless=True)
    c["webp_lossy_rgba"] = pil_save(Image.fromarray(alpha_img, "RGBA"), "WEBP", quality=80)
    c["webp_lossy_rgb"] = pil_save(Image.fromarray(noisy), "WEBP", quality=70)
    c["webp_lossless_rgb"] = pil_save(Image.fromarray(noisy), "WEBP", lossless=True)
    frames = [Image.fromarray(alpha_img, "RGBA"), Image.fromarray(alpha_img[::-1].copy(), "RGBA")]
    c["webp_anim_rgba"] = pil_save(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    return c


def smooth_rgb(rng, h, w):
    """Noise plus gradients, as PNG bytes (lossless, so decoding is exact and the resize is what is tested)."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), (xx + yy) % 256], -1)
    img = np.clip(base + rng.integers(-30, 31, (h, w, 3)), 0, 255).astype(np.uint8)
    return pil_save(Image.fromarray(img), "PNG")


# (image, patch, merge, temporal, min_pixels, max_pixels, what it exercises); images are "HxW" (made here) or a
# decode case's name
PREPROC = [
    ("23x37", 4, 2, 2, 256, 100000, "odd sizes, plain rounding"),
    ("23x37", 4, 2, 2, 64, 512, "area over max: floor branch (downscale)"),
    ("23x37", 4, 2, 2, 4096, 1 << 20, "area under min: ceil branch (upscale)"),
    ("32x64", 16, 2, 2, 1024, 1 << 20, "exact multiples: identity resize"),
    ("5x40", 4, 2, 2, 64, 1 << 20, "short side under the factor (height)"),
    ("40x6", 4, 2, 2, 64, 1 << 20, "short side under the factor (width)"),
    ("3x3", 4, 2, 2, 64, 1 << 20, "both sides under the factor"),
    ("2x1000", 4, 2, 2, 64, 1 << 20, "aspect 500 with a short side under the factor: kept"),
    ("8x1600", 4, 2, 2, 64, 1 << 20, "aspect exactly 200: kept"),
    ("9x1810", 4, 2, 2, 64, 1 << 20, "aspect over 200: refused"),
    ("1810x9", 4, 2, 2, 64, 1 << 20, "aspect over 200, tall: refused"),
    ("2x1000", 4, 2, 2, 64, 512, "elongated under a small max: zero side, refused"),
    ("20x28", 4, 2, 2, 64, 1 << 20, "halves round to even (2.5 -> 2, 3.5 -> 4)"),
    ("50x75", 14, 2, 2, 3136, 12845056, "patch 14 (factor 28)"),
    ("61x97", 14, 2, 1, 3136, 4096, "patch 14, temporal 1, floor branch"),
    ("100x60", 16, 2, 2, 8192, 8388608, "spec sizes: ceil branch"),
    ("jpg_420", 16, 2, 2, 8192, 8388608, "a decoded JPEG"),
    ("png_rgba8", 4, 2, 2, 256, 1 << 20, "a composited RGBA PNG"),
    ("webp_lossy_rgba", 14, 2, 2, 784, 1 << 20, "a composited lossy WebP"),
    ("png_gray16", 4, 2, 3, 64, 1 << 20, "temporal 3"),
    ("700x300", 16, 2, 2, 8192, 65536, "downscale by several times"),
    ("64x48", 4, 2, 2, 48 * 64, 48 * 64, "in == out on both axes through the min/max path"),
]


def resize_cases(rng):
    cases = [(h, w, f, mn, mx) for (h, w, f, mn, mx) in [
        (1, 1, 32, 8192, 8388608), (1, 10000, 32, 8192, 8388608), (31, 6200, 32, 8192, 8388608),
        (32, 6400, 32, 8192, 8388608), (32, 6401, 32, 8192, 8388608), (6401, 32, 32, 8192, 8388608),
        (48, 80, 32, 8192, 8388608), (16, 16, 32, 8192, 8388608), (4000, 3000, 32, 8192, 8388608),
        (8192, 8192, 32, 8192, 8388608), (65535, 65535, 32, 8192, 8388608), (1, 64 << 20, 32, 8192, 8388608),
        (1024, 1024, 32, 8192, 8388608), (2896, 2896, 32, 8192, 8388608), (2897, 2897, 32, 8192, 8388608),
        (80, 48, 32, 80 * 48, 80 * 48), (100, 100, 28, 3136, 12845056), (7, 3, 28, 3136, 12845056)]]
    for _ in range(3000):
        f = rng.choice([8, 14, 28, 32, 56])
        h, w = (int(x) for x in np.exp(rng.uniform(0, math.log(20000), 2)))
        mn = int(rng.choice([0, 64, 3136, 8192, 65536]))
        mx = int(rng.choice([512, 4096, 1 << 20, 8388608, 12845056]))
        cases.append((max(h, 1), max(w, 1), int(f), mn, mx))
    for k in range(1, 400):  # sizes whose h/factor is exactly x.5: round half to even
        cases.append((16 * (2 * k + 1), 32 * k, 32, 0, 1 << 40))
    return cases


def make(d):
    rng = np.random.default_rng(20260101)
    man = []
    cases = decode_cases(rng)
    for name, data in cases.items():
        rgb = pil_rgb(data)
        open(os.path.join(d, name + ".img"), "wb").write(data)
        open(os.path.join(d, name + ".rgb"), "wb").write(rgb.tobytes())
        man.append(f"decode {name} {rgb.shape[1]} {rgb.shape[0]}")
    for i, (src, p, m, t, mn, mx, _why) in enumerate(PREPROC):
        if src in cases:
            img = src + ".img"
            rgb = pil_rgb(cases[src])
        else:
            h, w = map(int, src.split("x"))
            img = f"pre{i}.img"
            data = smooth_rgb(rng, h, w)
            open(os.path.join(d, img), "wb").write(data)
            rgb = pil_rgb(data)
        other = ((0.48145466 * 255, 0.4578275 * 255, 0.40821073 * 255), (68.5, 66.7, 70.0))  # not only the spec's
        mean, std = (MEAN, STD) if i % 5 else other
        patches, (oh, ow) = preprocess(rgb, p, m, t, mn, mx, mean, std)
        if patches is not None:
            open(os.path.join(d, f"pre{i}.f32"), "wb").write(patches.astype("<f4").tobytes())
        vals = " ".join(repr(float(x)) for x in (*mean, *std))
        man.append(f"preproc pre{i} {img} {p} {m} {t} {mn} {mx} {vals} {oh} {ow}")
    for h, w, f, mn, mx in resize_cases(rng):
        r = smart_resize(h, w, f, mn, mx) or (0, 0)
        man.append(f"resize {h} {w} {f} {mn} {mx} {r[0]} {r[1]}")
    open(os.path.join(d, "manifest.txt"), "w").write("\n".join(man) + "\n")


def corpus(d):
    """Tiny seeds for the fuzzer: one of each kind, plus truncated copies."""
    rng = np.random.default_rng(7)
    u8 = lambda *s: rng.integers(0, 256, s, dtype=np.uint8)  # noqa: E731
    seeds = {
        "rgb.png": pil_save(Image.fromarray(u8(6, 8, 3)), "PNG"),
        "rgba.png": pil_save(Image.fromarray(u8(5, 6, 4), "RGBA"), "PNG"),
        "pal4_trns_adam7.png": png(rng.integers(0, 16, (7, 5)), 4, 3, True, plte=u8(16, 3), trns=bytes(u8(5))),
        "gray1.png": png(rng.integers(0, 2, (4, 9)), 1, 0),
        "gray16_key.png": png(rng.integers(0, 600, (4, 5)).astype(np.uint16), 16, 0, trns=struct.pack(">H", 300)),
        "rgb16_key.png": png(rng.integers(0, 65536, (3, 4, 3)).astype(np.uint16), 16, 2,
                             trns=struct.pack(">HHH", 1, 2, 3)),
        "la16_adam7.png": png(rng.integers(0, 65536, (5, 3, 2)).astype(np.uint16), 16, 4, True),
        "rgb.jpg": pil_save(Image.fromarray(u8(16, 16, 3)), "JPEG", quality=50),
        "progressive.jpg": pil_save(Image.fromarray(u8(10, 12, 3)), "JPEG", quality=50, progressive=True),
        "gray.jpg": pil_save(Image.fromarray(u8(8, 8), "L"), "JPEG", quality=50),
        "cmyk.jpg": pil_save(Image.fromarray(u8(8, 8, 4), "CMYK"), "JPEG", quality=50),
        "lossless_rgba.webp": pil_save(Image.fromarray(u8(6, 7, 4), "RGBA"), "WEBP", lossless=True),
        "lossy_rgba.webp": pil_save(Image.fromarray(u8(8, 8, 4), "RGBA"), "WEBP", quality=50),
        "lossy_rgb.webp": pil_save(Image.fromarray(u8(8, 8, 3)), "WEBP", quality=50),
    }
    f = [Image.fromarray(u8(6, 6, 4), "RGBA") for _ in range(2)]
    seeds["anim.webp"] = pil_save(f[0], "WEBP", save_all=True, append_images=f[1:], lossless=True)
    for name in ("rgb.png", "rgb.jpg", "lossy_rgba.webp"):
        seeds["truncated_" + name] = seeds[name][: len(seeds[name]) * 2 // 3]
    for name, data in seeds.items():
        open(os.path.join(d, name), "wb").write(data)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("--make", "--corpus"):
        sys.exit(__doc__)
    random.seed(0)
    (make if sys.argv[1] == "--make" else corpus)(sys.argv[2])
