//! GPU UUIDs: raw 16 bytes (CUDA) and the `GPU-xxxxxxxx-xxxx-...` text NVML and
//! `NVIDIA_VISIBLE_DEVICES` use.

/// Formats 16 bytes as NVML does: `GPU-8-4-4-4-12` lowercase hex.
pub fn format_gpu_uuid(b: &[u8; 16]) -> String {
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "GPU-{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Parses `GPU-…` text (the `GPU-` prefix optional) back to bytes.
pub fn parse_gpu_uuid(s: &str) -> Option<[u8; 16]> {
    let hex: String = s
        .trim()
        .trim_start_matches("GPU-")
        .chars()
        .filter(|c| *c != '-')
        .collect();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let b = [
            0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 1, 2, 3, 4, 5, 6, 7, 8,
        ];
        let s = format_gpu_uuid(&b);
        assert_eq!(s, "GPU-12345678-9abc-def0-0102-030405060708");
        assert_eq!(parse_gpu_uuid(&s), Some(b));
        assert_eq!(parse_gpu_uuid("GPU-1234"), None);
        assert_eq!(
            parse_gpu_uuid("GPU-zz345678-9abc-def0-0102-030405060708"),
            None
        );
    }
}
