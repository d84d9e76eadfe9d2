//! MD2 (RFC 1319) and HMAC-MD2: the runtime's integrity check hashes with it.

const PI_SUBST: [u8; 256] = [
    41, 46, 67, 201, 162, 216, 124, 1, 61, 54, 84, 161, 236, 240, 6, 19, 98, 167, 5, 243, 192, 199,
    115, 140, 152, 147, 43, 217, 188, 76, 130, 202, 30, 155, 87, 60, 253, 212, 224, 22, 103, 66,
    111, 24, 138, 23, 229, 18, 190, 78, 196, 214, 218, 158, 222, 73, 160, 251, 245, 142, 187, 47,
    238, 122, 169, 104, 121, 145, 21, 178, 7, 63, 148, 194, 16, 137, 11, 34, 95, 33, 128, 127, 93,
    154, 90, 144, 50, 39, 53, 62, 204, 231, 191, 247, 151, 3, 255, 25, 48, 179, 72, 165, 181, 209,
    215, 94, 146, 42, 172, 86, 170, 198, 79, 184, 56, 210, 150, 164, 125, 182, 118, 252, 107, 226,
    156, 116, 4, 241, 69, 157, 112, 89, 100, 113, 135, 32, 134, 91, 207, 101, 230, 45, 168, 2, 27,
    96, 37, 173, 174, 176, 185, 246, 28, 70, 97, 105, 52, 64, 126, 15, 85, 71, 163, 35, 221, 81,
    175, 58, 195, 92, 249, 206, 186, 197, 234, 38, 44, 83, 13, 110, 133, 40, 132, 9, 211, 223, 205,
    244, 65, 129, 77, 82, 106, 220, 55, 200, 108, 193, 171, 250, 36, 225, 123, 8, 12, 189, 177, 74,
    120, 136, 149, 139, 227, 99, 232, 109, 233, 203, 213, 254, 59, 0, 29, 57, 242, 239, 183, 14,
    102, 88, 208, 228, 166, 119, 114, 248, 235, 117, 75, 10, 49, 68, 80, 180, 143, 237, 31, 26,
    219, 153, 141, 51, 159, 17, 131, 20,
];

/// MD2 digest of `data`.
pub fn md2(data: &[u8]) -> [u8; 16] {
    let pad = 16 - data.len() % 16;
    let mut msg = data.to_vec();
    msg.extend(std::iter::repeat_n(pad as u8, pad));
    let mut checksum = [0u8; 16];
    let mut l = 0u8;
    for block in msg.chunks(16) {
        for j in 0..16 {
            checksum[j] ^= PI_SUBST[(block[j] ^ l) as usize];
            l = checksum[j];
        }
    }
    msg.extend_from_slice(&checksum);
    let mut x = [0u8; 48];
    for block in msg.chunks(16) {
        for j in 0..16 {
            x[16 + j] = block[j];
            x[32 + j] = x[16 + j] ^ x[j];
        }
        let mut t = 0u8;
        for round in 0..18u8 {
            for b in x.iter_mut() {
                *b ^= PI_SUBST[t as usize];
                t = *b;
            }
            t = t.wrapping_add(round);
        }
    }
    let mut out = [0u8; 16];
    out.copy_from_slice(&x[..16]);
    out
}

/// HMAC (RFC 2104) over MD2, whose block size is 16 bytes.
pub fn hmac_md2(key: &[u8; 16], data: &[u8]) -> [u8; 16] {
    let mut inner = key.map(|b| b ^ 0x36).to_vec();
    inner.extend_from_slice(data);
    let mut outer = key.map(|b| b ^ 0x5c).to_vec();
    outer.extend_from_slice(&md2(&inner));
    md2(&outer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn rfc1319_test_vectors() {
        assert_eq!(hex(&md2(b"")), "8350e5a3e24c153df2275c9f80692773");
        assert_eq!(hex(&md2(b"a")), "32ec01ec4a6dac72c0ab96fb34c0b5d1");
        assert_eq!(hex(&md2(b"abc")), "da853b0d3f88d99b30283a69e6ded6bb");
        assert_eq!(
            hex(&md2(b"message digest")),
            "ab4f496bfb2a530b219ff33031fe06b0"
        );
        assert_eq!(
            hex(&md2(
                b"12345678901234567890123456789012345678901234567890123456789012345678901234567890"
            )),
            "d5976f79d83d3a0dc9806c3c66f3efd8"
        );
    }

    #[test]
    fn substitution_is_a_permutation() {
        let mut seen = [false; 256];
        for &b in &PI_SUBST {
            assert!(!seen[b as usize]);
            seen[b as usize] = true;
        }
    }
}
