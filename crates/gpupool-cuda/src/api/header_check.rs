//! Checks every declared signature against NVIDIA's own headers (`cuda.h` of CUDA 13.0, 12.9
//! and 11.8, `nvml.h`), as fetched by `scripts/fetch-cuda`: same parameter count, same pointer
//! depth for each parameter and, for values passed directly, the same size.

use super::SIGNATURES;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

/// The shape of one C parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CParam {
    /// How many `*` (or `[]`) it has, counting a typedef'd object pointer (`CUcontext`) as one.
    depth: usize,
    /// Its size when passed directly (`None`: a struct by value or an unknown type).
    size: Option<usize>,
}

/// What a typedef name stands for.
#[derive(Debug, Clone, Copy)]
enum Typedef {
    /// A scalar of this many bytes (enums: 4; function pointers: 8).
    Size(usize),
    /// A pointer to an object (`typedef struct CUctx_st *CUcontext`).
    Pointer,
    /// A struct or union by value.
    Aggregate,
}

/// The headers' folder, fetched by `scripts/fetch-cuda`.
fn cuda_cache() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cache = std::env::var_os("GPUPOOL_CUDA_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".cache/cuda"));
    assert!(
        cache.join("12.9/.complete").is_file() && cache.join("nvml/.complete").is_file(),
        "NVIDIA headers missing: run scripts/fetch-cuda (scripts/test does)"
    );
    cache
}

/// `cc -E` of `header` with `defines`.
fn preprocess(header: &PathBuf, defines: &[&str]) -> String {
    let out = Command::new("cc")
        .args(["-E", "-P", "-w", "-x", "c"])
        .args(defines.iter().map(|d| format!("-D{d}")))
        .arg(header)
        .output()
        .expect("running cc -E");
    assert!(
        out.status.success(),
        "cc -E {}: {}",
        header.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("preprocessed header is UTF-8")
}

/// `text` without `__attribute__((…))` and `__asm__(…)` annotations.
fn strip_annotations(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = ["__attribute__", "__asm__"]
        .iter()
        .filter_map(|k| rest.find(k))
        .min()
    {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        let Some(open) = after.find('(') else {
            rest = "";
            break;
        };
        let mut depth = 0usize;
        let mut end = after.len();
        for (i, c) in after[open..].char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Top-level statements (split at `;` outside braces), whitespace collapsed.
fn statements(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0i32;
    for c in text.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ';' if depth == 0 => {
                out.push(cur.split_whitespace().collect::<Vec<_>>().join(" "));
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out
}

/// Identifier-like words of `s`.
fn words(s: &str) -> Vec<&str> {
    s.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .collect()
}

/// Qualifiers that change neither size nor depth.
const QUALIFIERS: &[&str] = &["const", "volatile", "struct", "enum", "union", "restrict"];

/// The size of a built-in type named by `ws` (`None`: not built-in).
fn builtin_size(ws: &[&str]) -> Option<usize> {
    let has = |w: &str| ws.contains(&w);
    if has("char") || has("_Bool") {
        Some(1)
    } else if has("short") {
        Some(2)
    } else if has("long") || has("double") {
        Some(8)
    } else if has("int") || has("unsigned") || has("signed") || has("float") {
        Some(4)
    } else if has("void") {
        Some(0)
    } else {
        None
    }
}

/// The size of the type named by `ws` (no pointers), given the typedefs seen so far.
fn size_of_named(ws: &[&str], typedefs: &HashMap<String, Typedef>) -> Option<usize> {
    let ws: Vec<&str> = ws
        .iter()
        .copied()
        .filter(|w| !QUALIFIERS.contains(w))
        .collect();
    if let Some(n) = builtin_size(&ws) {
        return Some(n);
    }
    match ws.as_slice() {
        [name] => match typedefs.get(*name)? {
            Typedef::Size(n) => Some(*n),
            Typedef::Pointer => Some(8),
            Typedef::Aggregate => None,
        },
        _ => None,
    }
}

/// Records the typedef in `stmt` (which starts with `typedef`).
fn add_typedef(stmt: &str, typedefs: &mut HashMap<String, Typedef>) {
    let body = stmt.trim_start_matches("typedef").trim();
    if let Some(fp) = body.find("(*") {
        // A function pointer: `ret (*name)(args)`.
        if let Some(name) = words(&body[fp..]).first() {
            typedefs.insert(name.to_string(), Typedef::Size(8));
        }
        return;
    }
    if let Some(close) = body.rfind('}') {
        // `struct X { … } *A, B` / `enum X { … } A`.
        let kind = if body.starts_with("enum") {
            Typedef::Size(4)
        } else {
            Typedef::Aggregate
        };
        for name in body[close + 1..].split(',') {
            let n = words(name);
            if let Some(last) = n.last() {
                let t = if name.contains('*') {
                    Typedef::Pointer
                } else {
                    kind
                };
                typedefs.insert(last.to_string(), t);
            }
        }
        return;
    }
    let ws = words(body);
    let Some((name, base)) = ws.split_last() else {
        return;
    };
    let t = if body.contains('*') {
        Typedef::Pointer
    } else if body.contains('[') {
        Typedef::Aggregate
    } else {
        match size_of_named(base, typedefs) {
            Some(n) => Typedef::Size(n),
            // `struct X Y` with X defined elsewhere, or opaque.
            None => Typedef::Aggregate,
        }
    };
    typedefs.insert(name.to_string(), t);
}

/// The shape of one parameter's declaration text (`None` for a lone `void`).
fn parse_param(p: &str, typedefs: &HashMap<String, Typedef>) -> Option<CParam> {
    let p = p.trim();
    if p == "void" {
        return None;
    }
    if p.contains('(') {
        // A function pointer parameter.
        return Some(CParam {
            depth: 0,
            size: Some(8),
        });
    }
    let mut ws = words(p.split('[').next().unwrap_or(p));
    ws.retain(|w| !QUALIFIERS.contains(w));
    // Drop the parameter's name: the last word, when the rest still names a type.
    if ws.len() > 1 && builtin_size(&ws[ws.len() - 1..]).is_none() {
        ws.pop();
    }
    let depth = p.matches('*').count() + p.matches('[').count() + opaque_pointer(&ws, typedefs);
    let size = if depth > 0 {
        Some(8)
    } else {
        size_of_named(&ws, typedefs)
    };
    Some(CParam { depth, size })
}

/// 1 when `ws` names a typedef'd object pointer, else 0.
fn opaque_pointer(ws: &[&str], typedefs: &HashMap<String, Typedef>) -> usize {
    match ws {
        [name] => usize::from(matches!(typedefs.get(*name), Some(Typedef::Pointer))),
        _ => 0,
    }
}

/// Splits a parameter list at top-level commas.
fn split_params(list: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in list.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&list[start..]);
    out
}

/// A header's prototypes and typedefs.
type Parsed = (HashMap<String, Vec<CParam>>, HashMap<String, Typedef>);

/// The prototypes (returning `CUresult` / `nvmlReturn_t`) and typedefs of one preprocessed
/// header, later declarations of a name replacing earlier ones.
fn prototypes(text: &str) -> Parsed {
    let mut typedefs = HashMap::new();
    let mut out = HashMap::new();
    for stmt in statements(&strip_annotations(text)) {
        let stmt = stmt.trim_start_matches("extern ").trim();
        if stmt.starts_with("typedef") {
            add_typedef(stmt, &mut typedefs);
            continue;
        }
        let Some(rest) = stmt
            .strip_prefix("CUresult ")
            .or_else(|| stmt.strip_prefix("nvmlReturn_t "))
        else {
            continue;
        };
        let Some(open) = rest.find('(') else { continue };
        let name = rest[..open].trim();
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || !rest.ends_with(')') {
            continue;
        }
        let list = &rest[open + 1..rest.len() - 1];
        let params = split_params(list)
            .into_iter()
            .filter_map(|p| parse_param(p, &typedefs))
            .collect();
        out.insert(name.to_string(), params);
    }
    (out, typedefs)
}

/// Every prototype of the headers, the newest version's first; names only declared for
/// NVIDIA's own legacy builds (the unversioned originals) taken from those last.
fn header_prototypes() -> Parsed {
    let cache = cuda_cache();
    let cuda = |v: &str| -> PathBuf {
        let sub = if v == "13.0" { "cu13" } else { "cuda_runtime" };
        cache
            .join(v)
            .join("nvidia")
            .join(sub)
            .join("include/cuda.h")
    };
    let nvml = cache.join("nvml/nvidia/cu13/include/nvml.h");
    let (mut found, mut all_typedefs) = (HashMap::new(), HashMap::new());
    let mut add = |(protos, typedefs): Parsed| {
        for (k, v) in protos {
            found.entry(k).or_insert(v);
        }
        for (k, v) in typedefs {
            all_typedefs.entry(k).or_insert(v);
        }
    };
    for v in ["13.0", "12.9", "11.8"] {
        add(prototypes(&preprocess(&cuda(v), &[])));
        add(prototypes(&preprocess(
            &cuda(v),
            &["__CUDA_API_PER_THREAD_DEFAULT_STREAM"],
        )));
    }
    add(prototypes(&preprocess(&nvml, &[])));
    for v in ["13.0", "12.9", "11.8"] {
        add(prototypes(&preprocess(
            &cuda(v),
            &["__CUDA_API_VERSION_INTERNAL"],
        )));
    }
    add(prototypes(&preprocess(
        &nvml,
        &["NVML_NO_UNVERSIONED_FUNC_DEFS"],
    )));
    (found, all_typedefs)
}

/// Pointer depth of a Rust type as written, a C object-pointer typedef's name counting one.
fn rust_depth(ty: &str, typedefs: &HashMap<String, Typedef>) -> usize {
    let base: Vec<&str> = words(ty)
        .into_iter()
        .filter(|w| !matches!(*w, "mut" | "const"))
        .collect();
    ty.matches("*mut").count() + ty.matches("*const").count() + opaque_pointer(&base, typedefs)
}

#[test]
fn the_header_parser_reads_typedefs_and_prototypes() {
    let text = "typedef unsigned long long CUdeviceptr_v2; typedef CUdeviceptr_v2 CUdeviceptr;\n\
                typedef enum CUlimit_enum { A = 1, B } CUlimit; typedef struct CUctx_st *CUcontext;\n\
                typedef struct CUuuid_st { char bytes[16]; } CUuuid;\n\
                typedef void (*CUhostFn)(void *userData);\n\
                CUresult cuX(CUdeviceptr *d, size_t n) __attribute__((deprecated));\n\
                CUresult cuY(CUlimit l, CUcontext c, CUhostFn f, CUuuid u, const char **s);\n\
                CUresult cuZ(void); int other(int a);";
    let text = format!("typedef unsigned long size_t;\n{text}");
    let (p, _) = prototypes(&text);
    let sized = |depth, size| CParam {
        depth,
        size: Some(size),
    };
    assert_eq!(p["cuX"], vec![sized(1, 8), sized(0, 8)]);
    assert_eq!(
        p["cuY"],
        vec![
            sized(0, 4),
            sized(1, 8),
            sized(0, 8),
            CParam {
                depth: 0,
                size: None
            },
            sized(2, 8),
        ]
    );
    assert!(p["cuZ"].is_empty());
    assert!(!p.contains_key("other"));
}

#[test]
fn every_declared_signature_matches_nvidias_headers() {
    let (headers, typedefs) = header_prototypes();
    let mut wrong = Vec::new();
    for (name, params) in SIGNATURES {
        let Some(c) = headers.get(*name) else {
            wrong.push(format!("{name}: in no header"));
            continue;
        };
        if c.len() != params.len() {
            wrong.push(format!(
                "{name}: {} parameters, the header has {}",
                params.len(),
                c.len()
            ));
            continue;
        }
        for (i, ((ty, size), cp)) in params.iter().zip(c).enumerate() {
            let depth = rust_depth(ty, &typedefs);
            let size_differs = depth == 0 && cp.size.is_some_and(|n| n != *size);
            if depth != cp.depth || size_differs {
                wrong.push(format!(
                    "{name} parameter {i}: `{ty}` ({size} bytes, depth {depth}), the header has \
                     {cp:?}"
                ));
            }
        }
    }
    assert!(
        SIGNATURES.len() > 250,
        "the list is the whole exported surface"
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
