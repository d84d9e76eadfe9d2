//! Mangled extender requests (any field of a real payload replaced by a value of another type
//! or an absurd one, and arbitrary bytes) are answered `200` with a well-formed result or
//! `400` with the reason: never a panic, a hang or a dropped connection.

use gpupool_fakekube as fake_api;

use axum::body::Body;
use axum::Router;
use gpupool_extender::api::{ExtenderFilterResult, HostPriority};
use gpupool_extender::kube_api;
use gpupool_extender::server::{self, App};
use gpupool_extender::state::{Extender, Settings};
use http::{Request, StatusCode};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use tower::ServiceExt;

fn payload() -> Value {
    serde_json::from_str(include_str!("../data/filter-node-names.json")).unwrap()
}

/// JSON pointers of every value in `v`.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                pointers(
                    x,
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                pointers(x, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

fn odd_values() -> Vec<Value> {
    vec![
        Value::Null,
        json!(0),
        json!(-1),
        json!(1e300),
        json!(u64::MAX),
        json!(""),
        json!("-5"),
        json!("99999999999999999999"),
        json!("x".repeat(10_000)),
        json!([]),
        json!({}),
        json!(true),
        json!([{"name": 1}]),
    ]
}

struct Harness {
    runtime: tokio::runtime::Runtime,
    router: Router,
}

fn harness() -> Harness {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let router = runtime.block_on(async {
        let mut c = fake_api::Cluster::default();
        c.add_node("gpu-a", &[("GPU-a0", 81_559, 0), ("GPU-a1", 81_559, 1)]);
        c.add_node("gpu-b", &[("GPU-b0", 81_559, 0)]);
        c.add_pod("ml", "llm-infer-7f9c6d5b8-x2k4q", 1, 20_000);
        let client = fake_api::client(Arc::new(Mutex::new(c)));
        let extender = Arc::new(Extender::new(Settings::default()));
        kube_api::rebuild(&extender, &client).await.unwrap();
        server::router(Arc::new(App {
            extender,
            client,
            ready: AtomicBool::new(true),
        }))
    });
    Harness { runtime, router }
}

fn call(h: &Harness, path: &str, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
    h.runtime.block_on(async {
        let request = Request::builder()
            .method("POST")
            .uri(path)
            .body(Body::from(body))
            .unwrap();
        let response = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            h.router.clone().oneshot(request),
        )
        .await
        .expect("answered within 10 s")
        .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 30)
            .await
            .unwrap();
        (status, bytes.to_vec())
    })
}

fn check(h: &Harness, path: &str, body: Vec<u8>) -> Result<(), TestCaseError> {
    let (status, bytes) = call(h, path, body);
    prop_assert!(
        status == StatusCode::OK || status == StatusCode::BAD_REQUEST,
        "{path}: status {status}"
    );
    if status == StatusCode::OK {
        match path {
            "/filter" => {
                serde_json::from_slice::<ExtenderFilterResult>(&bytes).unwrap();
            }
            "/prioritize" => {
                let p: Vec<HostPriority> = serde_json::from_slice(&bytes).unwrap();
                prop_assert!(p.iter().all(|h| (0..=10).contains(&h.score)));
            }
            _ => {
                serde_json::from_slice::<Value>(&bytes).unwrap();
            }
        }
    } else {
        prop_assert!(!bytes.is_empty(), "{path}: a 400 without a reason");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn mangled_payloads_get_an_answer(which in any::<prop::sample::Index>(),
                                      value in any::<prop::sample::Index>(),
                                      verb in 0usize..3) {
        thread_local!(static H: Harness = harness());
        let mut body = payload();
        let mut all = Vec::new();
        pointers(&body, String::new(), &mut all);
        let at = which.get(&all).clone();
        let odd = odd_values();
        let v = value.get(&odd).clone();
        match body.pointer_mut(&at) {
            Some(slot) => *slot = v,
            None => body = v,
        }
        let path = ["/filter", "/prioritize", "/bind"][verb];
        let bytes = body.to_string().into_bytes();
        H.with(|h| check(h, path, bytes))?;
    }

    #[test]
    fn arbitrary_bytes_get_an_answer(bytes in proptest::collection::vec(any::<u8>(), 0..300),
                                     verb in 0usize..3) {
        thread_local!(static H: Harness = harness());
        let path = ["/filter", "/prioritize", "/bind"][verb];
        H.with(|h| check(h, path, bytes))?;
    }
}
