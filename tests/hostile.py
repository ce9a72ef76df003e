"""Hostile and malformed text inputs, shared by the command-line and API hardening tests."""

MARKUP = [
    "<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "{{ 7*7 }}", "{% raw %}",
    "${7*7}", "javascript:alert(1)", "<svg/onload=alert(1)>", "</textarea><b>bold</b>",
    "' OR 1=1 --", "\\u003cscript\\u003e", "<!--", "]]>", "&lt;&amp;&gt;", "`rm -rf /`",
]
UNICODE = [
    "🙂", "👩‍👩‍👧‍👦 family", "e\u0301\u0301\u0301 combining", "Z̴̡̛͔̈a̷̢͎͑l̶̰̈g̵̡̛o̶̧̊",
    "مرحبا بالعالم", "שלום עולם", "\u202eRTL override\u202c", "\u200b\u200c\u200d zero width",
    "\ufeffBOM", "\U0010ffff max code point", "中文字符测试", "ｆｕｌｌｗｉｄｔｈ", "𝕄𝕒𝕥𝕙",
]
CONTROL = [
    "\x00", "a\x00b", "\x01\x02\x03\x1b[31mred\x1b[0m", "tab\tnew\nline\rcr", "\x7f\x85\x9f",
    "\n", "\t", "\r\n\r\n",
]
SPECIAL = [
    "<|endoftext|>", "<|endoftext|><|endoftext|>", "Hello<|endoftext|>world", "<|endoftext",
    "<|im_start|>", " ", "   ", "a", ".", "0", "-1", "null", "None", "NaN", "true", "[]", "{}",
]
BASES = MARKUP + UNICODE + CONTROL + SPECIAL


def hostile_texts():
    """≈ 200 inputs: each base, plus it padded, doubled and embedded in a sentence."""
    out = []
    for b in BASES:
        out += [b, b + b, f"The {b} is too big.", f" {b} "]
    return out


LONE_SURROGATES = ["\ud800", "abc\udfff", "\udcff\udcfe invalid utf-8 as Python decodes it"]
