"""What the gpu-check sections share: reading the `KEY VALUE` lines a test program prints, and
what tests/c/drv_paths ipc prints on a real driver."""


def key_values(text):
    """The `KEY VALUE` lines of `text` as a dict (`FAIL` lines left out)."""
    kv = {}
    for line in text.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and not line.startswith("FAIL"):
            kv[parts[0]] = parts[1].strip()
    return kv


# What a real driver shares with a second process (no simulated kernel there: busy_kernel 0).
IPC_EXPECT = {"same_handle_twice": "1", "busy_kernel": "0", "child_open_event_rc": "0",
              "child_event_sync_rc": "0", "child_event_done": "1", "child_open_rc": "0",
              "child_sees_pattern": "1", "child_open_again_same": "1", "child_close_rc": "0",
              "child_close_last_rc": "0", "child_exit": "0", "child_writes_seen": "1",
              "event_done": "1", "free_rc": "0"}
