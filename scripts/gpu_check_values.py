"""What the gpu-check sections share: reading the `KEY VALUE` lines a test program prints."""


def key_values(text):
    """The `KEY VALUE` lines of `text` as a dict (`FAIL` lines left out)."""
    kv = {}
    for line in text.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and not line.startswith("FAIL"):
            kv[parts[0]] = parts[1].strip()
    return kv
